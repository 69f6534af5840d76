package rthub

// MemoryBrokerRooms returns how many room streams b's store holds, for tests
// that check expired rooms are freed.
func MemoryBrokerRooms(b *MemoryBroker) int {
	n := 0
	for i := range b.store.shards {
		s := &b.store.shards[i]
		s.mu.Lock()
		n += len(s.rooms)
		s.mu.Unlock()
	}
	return n
}
