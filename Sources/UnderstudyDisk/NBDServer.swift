import CUnderstudyShims
import Logging
import Synchronization
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// Serves a raw disk image to QEMU over NBD on a unix socket, and tells an observer about every
/// change before the guest learns it is done.
///
/// The guest's disk is `-blockdev driver=nbd` on this server (see `qemuArguments`). Every WRITE,
/// WRITE_ZEROES and TRIM is applied to the image and then reported to the observer, and only
/// then answered; a FLUSH (and a write with FUA) is made durable, reported, then answered. Since
/// QMP `stop` waits for the replies of all requests in flight, the observer has seen every
/// change of an epoch once `stop` returns. Each connection runs on its own thread, processing
/// its requests strictly in order; several connections may be open at once.
public final class NBDServer: Sendable {
    /// Where clients connect (QEMU's `server.path`).
    public let socketPath: String
    /// The name clients ask for (QEMU's `export`).
    public let exportName: String
    /// The image served: readable by its owner too (the primary copies it in the initial sync).
    public let image: DiskImage
    /// The export's size in bytes: the image's size when the server started.
    public var size: UInt64 { image.size }
    private let context: NBDExportContext
    private let listener: Int32
    private let connections = NBDConnectionRegistry()
    /// The accept thread; nil once stopped.
    private let acceptThread = Mutex<JoinableThread?>(nil)

    /// Opens the image and starts listening.
    ///
    /// - Parameters:
    ///   - imagePath: an existing raw image (file or block device); its size is the disk's size.
    ///   - socketPath: where to listen; created owner-only (0600). A stale socket left there by a
    ///     dead server is replaced; a live one, or any other kind of file, is an error.
    ///   - exportName: the name clients ask for (the empty name is accepted too, as the default).
    ///   - readOnly: refuse every change with EPERM and announce the export read-only.
    ///   - observer: told about every change and flush; nil to serve without reporting.
    public init(imagePath: String, socketPath: String, exportName: String, readOnly: Bool = false,
                observer: (any DiskWriteObserver)?, logger: Logger) throws(DiskError) {
        let nameBytes = Array(exportName.utf8)
        guard nameBytes.count <= NBDExport.maximumNameLength, !nameBytes.contains(0) else {
            throw .invalidConfiguration("the NBD export name must be at most \(NBDExport.maximumNameLength) bytes of UTF-8 without NUL")
        }
        image = try DiskImage(path: imagePath, readOnly: readOnly)
        do throws(UnixSocket.ListenError) {
            listener = try UnixSocket.listen(at: socketPath, backlog: 16)
        } catch {
            throw .listen(error)
        }
        self.socketPath = socketPath
        self.exportName = exportName
        let export = NBDExport(name: exportName, size: image.size, isReadOnly: readOnly)
        context = NBDExportContext(export: export, socketPath: socketPath, image: image, observer: observer, logger: logger)
        let (listener, context, connections) = (listener, context, connections)
        acceptThread.withLock { $0 = JoinableThread(name: "nbd-accept") { Self.accept(listener, context, connections) } }
        logger.info("NBD server listening", metadata: ["socket": "\(socketPath)", "export": "\(exportName)", "image": "\(imagePath)",
                                                       "size": "\(size)", "read-only": "\(readOnly)"])
    }

    deinit { stop() }

    /// Counters since the server started.
    public var statistics: NBDStatistics { context.statistics.withLock { $0 } }

    /// Stops listening, closes every connection (a request being executed finishes first), waits
    /// for all threads and removes the socket. Safe to call more than once.
    public func stop() {
        guard let thread = acceptThread.withLock({ thread in
            defer { thread = nil }
            return thread
        }) else { return }
        context.isStopping.store(true, ordering: .relaxed)
        // Wakes the blocked accept (it fails with EINVAL) without closing the fd under it.
        shutdown(listener, Int32(SHUT_RDWR))
        thread.join()
        close(listener)
        connections.stopAll()
        unlink(socketPath)
        context.logger.info("NBD server stopped", metadata: ["socket": "\(socketPath)"])
    }

    /// QEMU options that give the guest this server's export as a virtio-blk disk.
    ///
    /// `nodeName` names the block node (and the device's drive). Commas in values are doubled, as
    /// QEMU's option syntax requires.
    /// - Parameter deviceOptions: more properties of the virtio-blk device (e.g. its virtio transport).
    public static func qemuArguments(socketPath: String, exportName: String, nodeName: String, deviceOptions: String = "") -> [String] {
        blockdevArguments(socketPath: socketPath, exportName: exportName, nodeName: nodeName)
            + VirtioDisk.deviceArguments(nodeName: nodeName, deviceOptions: deviceOptions)
    }

    /// QEMU options that make this server's export the block node `nodeName`, for a device
    /// attached otherwise (the UEFI variable store's flash chip).
    public static func blockdevArguments(socketPath: String, exportName: String, nodeName: String) -> [String] {
        let escaped = VirtioDisk.escaped
        return ["-blockdev", "driver=nbd,server.type=unix,server.path=\(escaped(socketPath)),export=\(escaped(exportName)),node-name=\(escaped(nodeName))"]
    }

    private static func accept(_ listener: Int32, _ context: NBDExportContext, _ connections: NBDConnectionRegistry) {
        while true {
            // close-on-exec: QEMU, started by the agent, must not inherit guest-disk connections.
            let fd = us_accept_cloexec(listener, nil, nil)
            if fd < 0 {
                let code = errno
                if context.isStopping.load(ordering: .relaxed) { return }
                if code == EINTR || code == ECONNABORTED { continue }
                context.logger.error("NBD accept failed; retrying", metadata: ["error": "\(String(cString: strerror(code)))"])
                // Out of file descriptors, typically: wait instead of spinning.
                usleep(100_000)
                continue
            }
            connections.reapFinished()
            guard let id = connections.add(fd) else {
                close(fd)
                return
            }
            context.statistics.withLock { $0.connections += 1 }
            let thread = JoinableThread(name: "nbd-conn-\(id)") {
                NBDConnection(fd: fd, id: id, context: context).run()
                connections.finish(id)
            }
            connections.started(id, thread)
        }
    }
}
