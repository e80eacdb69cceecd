"""The console's control channel: wire protocol, status records, the actor-side server and the console's
client. Both the actor and the console import it; it imports neither."""
