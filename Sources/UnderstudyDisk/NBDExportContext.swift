import Logging
import Synchronization
import UnderstudyProtocol
#if canImport(Glibc)
import Glibc
#endif

/// What every connection of one server shares.
final class NBDExportContext: Sendable {
    let export: NBDExport
    let socketPath: String
    let image: DiskImage
    let observer: (any DiskWriteObserver)?
    let logger: Logger
    let statistics = Mutex(NBDStatistics())
    /// Set by `NBDServer.stop()`, so that connections closed by it are not logged as failures.
    let isStopping = Atomic<Bool>(false)
    /// Held from applying a change to the image until it has been reported. With several
    /// connections this keeps the observer's order the image's order: otherwise two overlapping
    /// writes could reach the image in one order and the observer in the other, and the backup
    /// would end up with the other write's bytes.
    let changeLock = Mutex(())

    init(export: NBDExport, socketPath: String, image: DiskImage, observer: (any DiskWriteObserver)?, logger: Logger) {
        self.export = export
        self.socketPath = socketPath
        self.image = image
        self.observer = observer
        self.logger = logger
    }
}
