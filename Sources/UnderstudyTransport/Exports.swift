// Sockets, threads and queues are part of what a transport user works with (an `Endpoint` to dial,
// a `JoinableThread` to read on, `TransportError` to catch): importing the transport brings them.
@_exported import UnderstudySystem
