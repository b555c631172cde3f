import Logging
import Synchronization
import UnderstudyProtocol
#if canImport(Glibc)
import Glibc
#endif

/// One client connection, run on its own thread: the handshake, then requests strictly one after
/// another in arrival order (each one is finished, reported and answered before the next is
/// read), until the client disconnects or breaks the protocol.
struct NBDConnection {
    let fd: Int32
    let id: Int
    let context: NBDExportContext

    /// Why a connection ended other than by the client's request.
    private enum End: Error {
        /// The client's side of the socket closed (or was shut down by `stop()`); `midMessage`
        /// says whether it happened in the middle of a message.
        case closed(midMessage: Bool)
        case sendFailed(errno: Int32)
        case failed(DiskError)
    }

    func run() {
        var logger = context.logger
        logger[metadataKey: "nbd-connection"] = "\(id)"
        logger.info("NBD client connected", metadata: ["export": "\(context.export.name)"])
        do throws(End) {
            if try handshake(logger) {
                try transmit(logger)
            }
            logger.info("NBD client disconnected")
        } catch {
            switch error {
            case .closed where context.isStopping.load(ordering: .relaxed):
                logger.info("NBD connection closed: the server is stopping")
            case .closed(let midMessage):
                if midMessage {
                    logger.warning("NBD client disconnected in the middle of a message")
                } else {
                    logger.info("NBD client disconnected without saying goodbye")
                }
            case .sendFailed(let code):
                logger.warning("NBD client went away before its reply was sent", metadata: ["error": "\(String(cString: strerror(code)))"])
            case .failed(let reason):
                logger.error("closed the NBD connection", metadata: ["error": "\(reason)"])
            }
        }
    }

    /// Runs the handshake. True when the transmission phase starts, false when the client aborted.
    private func handshake(_ logger: Logger) throws(End) -> Bool {
        var machine = NBDHandshakeStateMachine(export: context.export)
        try send(NBDHandshakeStateMachine.greeting)
        while true {
            let bytes = try receive(machine.bytesWanted, startsMessage: true)
            switch machine.received(bytes) {
            case .receive:
                continue
            case .send(let replies):
                try send(replies)
            case .refuse(let reply, let error):
                logger.warning("refused an NBD option", metadata: ["error": "\(error)"])
                try send(reply)
            case .startTransmission(let replies):
                try send(replies)
                logger.debug("NBD transmission phase started")
                return true
            case .close(let replies, let error):
                // Best effort: the connection closes either way.
                try? send(replies)
                if let error { throw .failed(error) }
                return false
            }
        }
    }

    private func transmit(_ logger: Logger) throws(End) {
        while true {
            let header = try receive(NBDRequest.headerSize, startsMessage: true)
            let request: NBDRequest
            do {
                request = try NBDRequest(header: header)
            } catch {
                // A bad magic number: the stream is out of step, nothing after it can be parsed.
                throw .failed(error)
            }
            switch context.export.check(request) {
            case .reject(let error, let discard):
                try skip(discard)
                logger.debug("refused an NBD request", metadata: ["type": "\(request.type)", "flags": "\(request.flags.rawValue)",
                                                                  "offset": "\(request.offset)", "length": "\(request.length)", "error": "\(error)"])
                try reply(error, to: request)
            case .execute(.disconnect):
                return
            case .execute(.read):
                try read(request, logger)
            case .execute(.write):
                let data = try receive(Int(request.length), startsMessage: false)
                let failure = applyChange(request, .bytes(data), logger) { () throws(DiskError) in
                    try data.withUnsafeBytes { raw in Result { () throws(DiskError) in try context.image.write(raw, at: request.offset) } }.get()
                }
                if failure == nil { context.statistics.withLock { $0.writes += 1; $0.bytesWritten += UInt64(data.count) } }
                try reply(failure, to: request)
            case .execute(.trim):
                let failure = applyChange(request, .zeroes(length: Int(request.length)), logger) { () throws(DiskError) in
                    try context.image.zero(offset: request.offset, length: UInt64(request.length), punchHole: true)
                }
                if failure == nil { context.statistics.withLock { $0.trims += 1 } }
                try reply(failure, to: request)
            case .execute(.writeZeroes):
                let punchHole = !request.flags.contains(.noHole)
                let failure = applyChange(request, .zeroes(length: Int(request.length)), logger) { () throws(DiskError) in
                    try context.image.zero(offset: request.offset, length: UInt64(request.length), punchHole: punchHole)
                }
                if failure == nil { context.statistics.withLock { $0.zeroes += 1 } }
                try reply(failure, to: request)
            case .execute(.flush):
                let started = ContinuousClock.now
                let failure = flush(logger)
                let took = ContinuousClock.now - started
                if failure == nil { context.statistics.withLock { $0.flushes += 1; $0.flushTime += took } }
                try reply(failure, to: request)
            }
        }
    }

    /// READ: the reply header and the data leave in one send. A failed read sends the error
    /// header alone, as simple replies require.
    private func read(_ request: NBDRequest, _ logger: Logger) throws(End) {
        var message = [UInt8](repeating: 0, count: NBDSimpleReply.headerSize + Int(request.length))
        do throws(DiskError) {
            try message.withUnsafeMutableBytes { raw in
                Result { () throws(DiskError) in
                    try context.image.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[NBDSimpleReply.headerSize...]), at: request.offset)
                }
            }.get()
        } catch {
            logger.error("disk read failed", metadata: ["offset": "\(request.offset)", "length": "\(request.length)", "error": "\(error)"])
            try reply(NBDError(error), to: request)
            return
        }
        message.replaceSubrange(0..<NBDSimpleReply.headerSize, with: NBDSimpleReply(handle: request.handle).bytes)
        context.statistics.withLock { $0.reads += 1; $0.bytesRead += UInt64(request.length) }
        try send(message)
    }

    /// Applies a change and reports it to the observer, both under the change lock; the caller
    /// replies only after this returns, so the report always precedes the reply. With FUA the
    /// change is made durable before it is reported, then reported as flushed. A change that
    /// failed is not reported. If only the FUA sync fails, the image already holds the change
    /// (reads return it), so it is reported but not as flushed, and the request fails.
    private func applyChange(_ request: NBDRequest, _ data: DiskWriteData, _ logger: Logger,
                             _ change: () throws(DiskError) -> Void) -> NBDError? {
        let failure: DiskError? = context.changeLock.withLock { _ in
            do throws(DiskError) {
                try change()
            } catch {
                return error
            }
            var syncFailure: DiskError?
            if request.flags.contains(.fua) {
                do throws(DiskError) { try context.image.synchronize() } catch { syncFailure = error }
            }
            context.observer?.diskChanged(offset: request.offset, data: data)
            if request.flags.contains(.fua) && syncFailure == nil { context.observer?.diskFlushed() }
            return syncFailure
        }
        guard let failure else { return nil }
        logger.error("disk change failed", metadata: ["type": "\(request.type)", "offset": "\(request.offset)",
                                                      "length": "\(request.length)", "error": "\(failure)"])
        return NBDError(failure)
    }

    /// FLUSH: every change reported so far is made durable, then reported flushed. Under the
    /// change lock, so that no other connection's change is reported between the sync and the
    /// flush report without being covered by the sync.
    private func flush(_ logger: Logger) -> NBDError? {
        let failure: DiskError? = context.changeLock.withLock { _ in
            do throws(DiskError) {
                try context.image.synchronize()
            } catch {
                return error
            }
            context.observer?.diskFlushed()
            return nil
        }
        guard let failure else { return nil }
        logger.error("disk flush failed", metadata: ["error": "\(failure)"])
        return NBDError(failure)
    }

    private func reply(_ error: NBDError?, to request: NBDRequest) throws(End) {
        if error != nil { context.statistics.withLock { $0.errors += 1 } }
        try send(NBDSimpleReply(error: error, handle: request.handle).bytes)
    }

    /// Reads exactly `count` bytes. `startsMessage`: whether the client may cleanly stop before
    /// the first of them (between messages), which is logged differently from a cut message.
    private func receive(_ count: Int, startsMessage: Bool) throws(End) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { raw in
                // In bounds: done < count == raw.count.
                recv(fd, raw.baseAddress! + done, count - done, 0)
            }
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else if n == 0 || errno == ECONNRESET {
                throw .closed(midMessage: !startsMessage || done > 0)
            } else {
                throw .failed(.socket(operation: "receive on a connection of", path: context.socketPath, errno: errno))
            }
        }
        return bytes
    }

    /// Reads and drops `count` bytes: the data of a refused write.
    private func skip(_ count: Int) throws(End) {
        var left = count
        while left > 0 {
            let chunk = min(left, 1 << 20)
            _ = try receive(chunk, startsMessage: false)
            left -= chunk
        }
    }

    private func send(_ bytes: [UInt8]) throws(End) {
        var done = 0
        while done < bytes.count {
            // MSG_NOSIGNAL: a vanished client must end this connection, not kill the process with SIGPIPE.
            let n = bytes.withUnsafeBytes { raw in
                // In bounds: done < bytes.count == raw.count.
                Glibc.send(fd, raw.baseAddress! + done, raw.count - done, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw .sendFailed(errno: n == 0 ? EPIPE : errno)
            }
        }
    }
}

extension NBDError {
    /// The reply code for a failed change or read.
    init(_ error: DiskError) {
        if case .io(_, _, let code) = error {
            self.init(errno: code)
        } else {
            self = .ioError
        }
    }
}
