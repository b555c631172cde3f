import Foundation
import Logging
import Synchronization
import UnderstudyQEMU
import UnderstudyReplica

/// The backup's QEMU, started ahead of need: it maps the replica's memory image and waits
/// (`-incoming defer`), touching neither memory nor disk, with the guest's disk and NIC already
/// served (`GuestDevices`, unprotected). Activation then only loads the committed device state,
/// instead of first starting a QEMU process (about 100 ms of a failover on this machine kind).
///
/// If it exits while waiting, activation starts a QEMU the usual way.
public final class StandbyVM: @unchecked Sendable {
    public let devices: GuestDevices
    private let process: QEMUProcess
    /// Where an unexpected exit goes: logged while standing by, the node's handler once taken.
    private let exitHandler = Mutex<(@Sendable (QEMUError) -> Void)?>(nil)
    private let exited = Atomic<Bool>(false)
    private let taken = Atomic<Bool>(false)

    /// - Parameter fence: once activated, the VM's output leaves only while this node holds it.
    public init(configuration: AgentConfiguration, store: ReplicaStore, fence: ActiveCopyFence, policy: GatePolicyControl,
                preloadLibrary: String?, logger: Logger) throws {
        devices = try GuestDevices(vm: configuration.vm, diskImages: store.diskPaths, nics: configuration.nics,
                                   outputBufferBytes: configuration.outputBufferBytes, role: .unprotected, fence: fence, policy: policy,
                                   logger: logger)
        let relay = CallbackRelay<QEMUError>()
        do {
            process = try QEMUCheckpointSource.startStandby(
                description: configuration.vm, ramFile: store.memoryPath, preloadLibrary: preloadLibrary,
                tracking: configuration.dirtyTracking, extraArguments: devices.qemuArguments, logger: logger
            ) { error in relay.forward(error) }
        } catch {
            devices.stop()
            throw error
        }
        relay.point { [weak self] error in
            guard let self else { return }
            self.exited.store(true, ordering: .sequentiallyConsistent)
            if let handler = self.exitHandler.withLock({ $0 }) {
                handler(error)
            } else {
                logger.warning("the standby QEMU exited; an activation will start a new one", metadata: ["error": "\(error)"])
            }
        }
        logger.info("standby QEMU waiting for activation", metadata: ["vm": "\(configuration.vm.id)", "pid": "\(process.pid)"])
    }

    /// The waiting QEMU for an activation, with its exits reported to `onExit` from now on;
    /// nil when it has exited (the caller starts one).
    public func take(onExit: @escaping @Sendable (QEMUError) -> Void) -> QEMUProcess? {
        exitHandler.withLock { $0 = onExit }
        guard !exited.load(ordering: .sequentiallyConsistent) else { return nil }
        taken.store(true, ordering: .sequentiallyConsistent)
        return process
    }

    /// Stops the QEMU (unless an activation took it) and the devices.
    public func stop() {
        if !taken.load(ordering: .sequentiallyConsistent) { process.stop() }
        devices.stop()
    }
}
