import Foundation
import Synchronization
import UnderstudyProtocol
import UnderstudySystem

/// Whole frames over a TLS stream. `send` may be called from any thread (frames never interleave);
/// `receive` from one reader thread at a time.
public final class FrameConnection: @unchecked Sendable {
    public let stream: TLSStream
    private let writeLock = NSLock()
    private let sent = Atomic<UInt64>(0)
    private let received = Atomic<UInt64>(0)

    public init(stream: TLSStream) {
        self.stream = stream
    }

    /// Bytes written and read so far, frame headers included (TLS overhead excluded).
    public var bytesSent: UInt64 { sent.load(ordering: .relaxed) }
    public var bytesReceived: UInt64 { received.load(ordering: .relaxed) }

    public func send(_ frame: Frame) throws(TransportError) {
        writeLock.lock()
        defer { writeLock.unlock() }
        try stream.write(frame.bytes)
        sent.add(UInt64(frame.bytes.count), ordering: .relaxed)
    }

    public func send(_ message: Message) throws(TransportError) { try send(message.frame) }

    /// Reads the next frame. The header is validated before the payload is read, so an oversized
    /// or unknown frame ends the session without buffering it.
    /// - Throws: `TransportError` or `ProtocolError`.
    public func receive() throws -> Frame {
        var header = [UInt8](repeating: 0, count: Frame.headerSize)
        try header.withUnsafeMutableBytes { try stream.read(into: $0) }
        let (_, length) = try Frame.parseHeader(header)
        // Allocated uninitialised and filled straight from TLS: no zero-fill pass over large frames.
        let bytes = try [UInt8](unsafeUninitializedCapacity: Frame.headerSize + length) { buffer, count in
            buffer.baseAddress!.initialize(from: header, count: Frame.headerSize)
            count = Frame.headerSize
            if length > 0 {
                try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[Frame.headerSize...]),
                                continuingMessage: true)
            }
            count = Frame.headerSize + length
        }
        received.add(UInt64(bytes.count), ordering: .relaxed)
        return try Frame(validatedBytes: bytes)
    }

    /// Ends the connection; blocked `send` and `receive` calls return with an error.
    public func close() { stream.shutdown() }
}
