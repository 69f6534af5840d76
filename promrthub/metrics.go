package promrthub

// Metric describes one metric family the [Collector] exports: its name, type,
// help text, variable labels and where its values come from. [Metrics] lists
// them all; docs/metrics.md is generated from that list (go generate), and
// tests check that dashboards and alert rules name only these.
type Metric struct {
	// Name is the family's name, e.g. "rthub_connections". A histogram's
	// series add _bucket, _sum and _count.
	Name string
	// Type is "counter", "gauge" or "histogram".
	Type string
	// Help is the HELP text.
	Help string
	// Labels are the variable labels, in order. Every family also has the
	// constant label node when Options.Node is set.
	Labels []string
	// Source says what feeds it: "hub" (Hub.Stats, on every scrape), "hook"
	// (Collector.OnRefused or Collector.OnDisconnect installed in the hub's
	// Options), "broker" (Options.Broker or Options.BrokerControl), "bridge"
	// (Options.Bridge) or "process" (Options.MemoryLimit or the detected
	// limit).
	Source string
}

// Metric names, for the code that builds series; Metrics holds the rest.
const (
	mConnections       = "rthub_connections"
	mUsers             = "rthub_users"
	mRooms             = "rthub_rooms"
	mAccepted          = "rthub_connections_accepted_total"
	mHandshakesRefused = "rthub_handshakes_refused_total"
	mClosed            = "rthub_connections_closed_total"
	mPublished         = "rthub_published_total"
	mDelivered         = "rthub_delivered_total"
	mFramesSent        = "rthub_frames_sent_total"
	mWrites            = "rthub_socket_writes_total"
	mBytesSent         = "rthub_sent_bytes_total"
	mMessagesIn        = "rthub_received_messages_total"
	mBytesIn           = "rthub_received_bytes_total"
	mEventBytes        = "rthub_event_bytes_total"
	mReconnects        = "rthub_reconnects_total"
	mQueueFrames       = "rthub_send_queue_frames"
	mQueueBytes        = "rthub_send_queue_bytes"
	mReplyErrors       = "rthub_reply_errors_total"
	mEvents            = "rthub_events_total"
	mHistoryBytes      = "rthub_history_bytes"
	mHistoryEvictions  = "rthub_history_evictions_total"
	mDroppedFrames     = "rthub_dropped_frames_total"
	mOverflow          = "rthub_overflow_events_total"
	mGapNotices        = "rthub_gap_notices_total"
	mForbidden         = "rthub_forbidden_total"
	mRateLimited       = "rthub_rate_limited_total"
	mResumes           = "rthub_resumes_total"
	mUnrecovered       = "rthub_unrecovered_total"
	mGapsRecovered     = "rthub_gaps_recovered_total"
	mBrokerErrors      = "rthub_broker_errors_total"
	mLatency           = "rthub_broadcast_latency_seconds"
	mControlCalls      = "rthub_control_calls_total"
	mRevocations       = "rthub_revocations_total"
	mRevokedRefused    = "rthub_revoked_tokens_refused_total"
	mRevocationsKept   = "rthub_revocations_kept"
	mRevocationsDrop   = "rthub_revocations_dropped_total"
	mCalls             = "rthub_rpc_calls_total"
	mIdemRetries       = "rthub_idempotent_retries_total"
	mRelayedPosts      = "rthub_relayed_posts_total"

	mRefusals    = "rthub_refusals_total"
	mDisconnects = "rthub_disconnects_total"

	mBrokerConnected    = "rthub_broker_connected"
	mBrokerDeaf         = "rthub_broker_deaf"
	mBrokerProbeRTT     = "rthub_broker_probe_rtt_seconds"
	mBrokerLastProbe    = "rthub_broker_last_probe_timestamp_seconds"
	mBrokerRooms        = "rthub_broker_rooms"
	mBrokerResubscribes = "rthub_broker_resubscribes_total"
	mBrokerPublishes    = "rthub_broker_publishes_total"
	mBrokerPublishErrs  = "rthub_broker_publish_errors_total"
	mBrokerDeliveries   = "rthub_broker_deliveries_total"
	mBrokerCtlLive      = "rthub_broker_control_live"
	mBrokerCtlDropped   = "rthub_broker_control_dropped_total"
	mBrokerCtlResyncs   = "rthub_broker_control_resyncs_total"

	mMQTTConnected     = "rthub_mqtt_connected"
	mMQTTSubscribed    = "rthub_mqtt_subscribed"
	mMQTTConnects      = "rthub_mqtt_connects_total"
	mMQTTConnectErrors = "rthub_mqtt_connect_errors_total"
	mMQTTReceived      = "rthub_mqtt_received_total"
	mMQTTMessages      = "rthub_mqtt_messages_total"
	mMQTTPublishes     = "rthub_mqtt_publishes_total"
	mMQTTQueued        = "rthub_mqtt_queued"
	mMQTTQueuedBytes   = "rthub_mqtt_queued_bytes"
	mMQTTHighWater     = "rthub_mqtt_queue_high_water"

	mMemoryLimit = "rthub_memory_limit_bytes"
)

// catalog is the list Metrics returns, in the order of docs/metrics.md.
var catalog = []Metric{
	{mConnections, "gauge", "Open WebSocket connections on this hub.", nil, "hub"},
	{mUsers, "gauge", "Distinct users (token subjects) with a connection to this hub.", nil, "hub"},
	{mRooms, "gauge", "Rooms with at least one member on this hub.", nil, "hub"},
	{mAccepted, "counter", "WebSocket handshakes accepted (connections upgraded).", nil, "hub"},
	{mHandshakesRefused, "counter", "WebSocket handshakes refused, by reason: unauthorized (401), throttled (429: handshake rate or connection limits), other (400, 403 origin, 426, 503 while draining, failed upgrades).", []string{"reason"}, "hub"},
	{mClosed, "counter", "Connections closed by the hub, by reason: slow_consumer (4000, send queue overflow), ping_timeout (4001), token_expired (4002), protocol_error, abuse (1008, commands past the limit), revoked (4102, Hub.Revoke).", []string{"reason"}, "hub"},
	{mPublished, "counter", "Publish calls handed to the broker (one per room), with or without local members.", nil, "hub"},
	{mDelivered, "counter", "Event frames queued to connections (one per recipient).", nil, "hub"},
	{mEvents, "counter", "Events by name and outcome: published (Publish calls on this hub, one per room), delivered (frames queued to connections on this hub, one per recipient), dropped (recipients on this hub whose connection was closing or whose send queue was full). At most 256 event names; the rest are counted as event=\"(other)\".", []string{"event", "outcome"}, "hub"},
	{mDroppedFrames, "counter", "Frames never written: refused by a closing connection or a full send queue, or discarded from the queue of a connection that closed (events, replies and control frames).", nil, "hub"},
	{mOverflow, "counter", "Events the rooms' overflow policy (Policy.Overflow) left out of slow connections' send queues instead of closing them, one per connection, by outcome: dropped (drop-oldest, or conflate without a key or when conflating was not enough) and conflated (a newer event of the same room and key was queued). Not in rthub_dropped_frames_total.", []string{"outcome"}, "hub"},
	{mGapNotices, "counter", "Gap messages queued to tell connections that a room's events were left out by its overflow policy (one announces every loss of the room until it is written).", nil, "hub"},
	{mFramesSent, "counter", "Frames written to sockets: events, replies and control frames.", nil, "hub"},
	{mWrites, "counter", "Write system calls that carried the frames; frames_sent / socket_writes is the coalescing factor.", nil, "hub"},
	{mBytesSent, "counter", "Bytes written to WebSocket sockets, after compression (outbound bandwidth).", nil, "hub"},
	{mMessagesIn, "counter", "Messages read from clients.", nil, "hub"},
	{mBytesIn, "counter", "Message bytes read from clients (after inflating).", nil, "hub"},
	{mEventBytes, "counter", "Event bytes queued to connections, by form: plain (uncompressed) and wire (as framed, compressed where negotiated); wire / plain is the compression ratio.", []string{"form"}, "hub"},
	{mQueueFrames, "gauge", "Frames waiting in the connections' send queues now (slow readers build this up before they are closed as slow consumers).", nil, "hub"},
	{mQueueBytes, "gauge", "Bytes waiting in the connections' send queues now.", nil, "hub"},
	{mReplyErrors, "counter", "Error replies to client commands, by error code (forbidden, rate_limited, bad_request, ...; other for application codes).", []string{"code"}, "hub"},
	{mReconnects, "counter", "Handshakes carrying since positions: clients reconnecting to resume (one per connection).", nil, "hub"},
	{mForbidden, "counter", "Joins, emits and presence queries refused by the room policy.", nil, "hub"},
	{mRateLimited, "counter", "Client commands dropped by the per-connection command rate limit.", nil, "hub"},
	{mResumes, "counter", "Joins with a since position: a reconnecting client resuming a room (one per room).", nil, "hub"},
	{mUnrecovered, "counter", "Resumes and live gaps that history could not fill: clients told recovered:false, to reload.", nil, "hub"},
	{mGapsRecovered, "counter", "Live gaps (publications missed by this node) filled from the broker's history.", nil, "hub"},
	{mBrokerErrors, "counter", "Failed broker calls made by the hub: publish, subscribe, history.", nil, "hub"},
	{mHistoryBytes, "gauge", "Bytes of room history the in-memory broker keeps (0 with Redis, whose history is in Redis); bounded by MemoryBrokerOptions.MaxHistoryBytes.", nil, "hub"},
	{mHistoryEvictions, "counter", "Room histories the in-memory broker dropped to stay within MaxHistoryBytes, least recently published first (clients resuming them get recovered:false).", nil, "hub"},
	{mControlCalls, "counter", "Cluster-wide control calls made on this hub (ControlUser, Revoke, DisconnectUser, JoinUser, LeaveUser), by outcome: complete (every live node answered) or incomplete (some node did not answer before the deadline, or the broker failed).", []string{"outcome"}, "hub"},
	{mRevocations, "counter", "Token revocations accepted by Hub.Revoke on this hub.", nil, "hub"},
	{mRevokedRefused, "counter", "Handshakes and token refreshes this hub refused because the token was revoked (token_revoked).", nil, "hub"},
	{mRevocationsKept, "gauge", "Entries in this hub's replica of the cluster's revocations (bounded by Options.Revocation.MaxEntries).", nil, "hub"},
	{mRevocationsDrop, "counter", "Revocations this hub could not keep because its replica was at Revocation.MaxEntries: its handshakes accept those tokens (configure the same MaxEntries on every node).", nil, "hub"},
	{mCalls, "counter", "RPC calls started on this hub (docs/rpc.md), retries answered from the idempotency memory included.", nil, "hub"},
	{mIdemRetries, "counter", "Emits and calls with an idempotency key answered with the outcome of their first run, without running the handler, by outcome: replayed (the retry came after the first run) or joined (it came during the first run and waited for it).", []string{"outcome"}, "hub"},
	{mRelayedPosts, "counter", "POSTs of HTTP stream commands this hub relayed through the broker to the node holding the stream (docs/scaling.md).", nil, "hub"},
	{mLatency, "histogram", "Broadcast latency: a publication reaching this hub to its frame written to the last member's socket.", nil, "hub"},

	{mRefusals, "counter", "Refusals reported to Options.OnRefused, by op (handshake, join, emit, presence, refresh, abuse), error code and HTTP status (empty unless a handshake).", []string{"op", "code", "status"}, "hook"},
	{mDisconnects, "counter", "Connections ended, by WebSocket close code (1000 normal, 1001 going away or draining, 1006 dropped, 4000 slow consumer, ...; docs/protocol.md).", []string{"code"}, "hook"},

	{mBrokerConnected, "gauge", "1 while the broker shard's pub/sub connection is up with its subscriptions in place.", []string{"shard"}, "broker"},
	{mBrokerDeaf, "gauge", "1 while the broker shard's last liveness probe did not come back in time.", []string{"shard"}, "broker"},
	{mBrokerProbeRTT, "gauge", "Round trip of the broker shard's last liveness probe that came back, in seconds.", []string{"shard"}, "broker"},
	{mBrokerLastProbe, "gauge", "Unix time when the broker shard's last liveness probe came back (0 if none has).", []string{"shard"}, "broker"},
	{mBrokerRooms, "gauge", "Rooms this node subscribed on the broker shard.", []string{"shard"}, "broker"},
	{mBrokerResubscribes, "counter", "Pub/sub connections of the broker shard restored with all their rooms after a loss or a deaf probe.", []string{"shard"}, "broker"},
	{mBrokerPublishes, "counter", "Publish calls to the broker shard.", []string{"shard"}, "broker"},
	{mBrokerPublishErrs, "counter", "Failed publish calls to the broker shard.", []string{"shard"}, "broker"},
	{mBrokerDeliveries, "counter", "Publications the broker shard delivered to this node.", []string{"shard"}, "broker"},
	{mBrokerCtlLive, "gauge", "1 while the broker's control plane is live on this node: its control subscription is up and its heartbeat renewed (other nodes' control calls and revocations reach it).", nil, "broker"},
	{mBrokerCtlDropped, "counter", "Control messages the broker dropped because its queue of unhandled ones was full (their senders see this node missing).", nil, "broker"},
	{mBrokerCtlResyncs, "counter", "Control subscriptions the broker put in place, the first included (more mean it was lost and restored); each reloads the revocations.", nil, "broker"},

	{mMQTTConnected, "gauge", "1 while the MQTT bridge's connection is up.", nil, "bridge"},
	{mMQTTSubscribed, "gauge", "1 while the MQTT bridge is connected and every route is subscribed (it is receiving).", nil, "bridge"},
	{mMQTTConnects, "counter", "MQTT connections established by the bridge, the first included (reconnects = this - 1).", nil, "bridge"},
	{mMQTTConnectErrors, "counter", "Failed MQTT connection attempts and subscriptions.", nil, "bridge"},
	{mMQTTReceived, "counter", "MQTT messages received, by route (empty route: the topic matched none).", []string{"route"}, "bridge"},
	{mMQTTMessages, "counter", "MQTT messages by outcome: sent (to the hub), decode_error, skipped, unchanged, invalid_topic, dropped (queue overflow or shutdown), merged (conflated).", []string{"route", "outcome"}, "bridge"},
	{mMQTTPublishes, "counter", "Hub publish calls made by the MQTT bridge, by result (ok, error).", []string{"route", "result"}, "bridge"},
	{mMQTTQueued, "gauge", "MQTT messages waiting in the route's queue.", []string{"route"}, "bridge"},
	{mMQTTQueuedBytes, "gauge", "Bytes accounted to the MQTT messages waiting in the route's queue.", []string{"route"}, "bridge"},
	{mMQTTHighWater, "gauge", "The most MQTT messages that ever waited in the route's queue at once.", []string{"route"}, "bridge"},

	{mMemoryLimit, "gauge", "Memory this process may use, in bytes: Options.MemoryLimit, else the cgroup limit, else GOMEMLIMIT; absent when there is none. Alert on process_resident_memory_bytes / rthub_memory_limit_bytes.", nil, "process"},
}

// Metrics returns the metric families a Collector can export, in a fixed
// order. The slice is a copy.
func Metrics() []Metric {
	out := make([]Metric, len(catalog))
	for i, m := range catalog {
		m.Labels = append([]string(nil), m.Labels...)
		out[i] = m
	}
	return out
}
