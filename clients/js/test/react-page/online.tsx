// The component docs/react.md shows (doccheck compares the block with the
// region below); the React page renders it, so Chromium runs it.
// snippet:begin online
import { usePresence } from "@rthub/client/react";

export function Online() {
  const people = usePresence("staff"); // live: re-renders on arrivals and departures
  return (
    <ul>
      {people.map((p) => (
        <li key={p.user}>{p.name}{p.conns > 1 && ` (${p.conns} tabs)`}</li>
      ))}
    </ul>
  );
}
// snippet:end
