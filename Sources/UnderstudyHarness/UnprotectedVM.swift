import Logging
import UnderstudyAgent
import UnderstudyQEMU

/// A VM started as its agent would start it (the same `[vm]` and `[network]` configuration, the
/// same QEMU options, the disk over NBD and the NIC through the output gate, both served in this
/// process) but with no backup and no checkpoints: output passes at once. The baseline benches
/// compare protection against (`--output-commit`'s unprotected runs do the same by hand).
public final class UnprotectedVM: @unchecked Sendable {
    public let devices: GuestDevices
    public let source: QEMUCheckpointSource
    private let exits: ErrorRecorder<QEMUError>

    /// Starts the devices, then QEMU, which boots the guest at once.
    public init(configuration: AgentConfiguration, preloadLibrary: String?, logger: Logger) throws {
        let devices = try GuestDevices(vm: configuration.vm, diskImages: configuration.vm.replicatedImages, nics: configuration.nics,
                                       outputBufferBytes: configuration.outputBufferBytes,
                                       role: .unprotected, fence: nil, policy: GatePolicyControl(configuration.policy), logger: logger)
        let exits = ErrorRecorder<QEMUError>()
        do {
            source = try QEMUCheckpointSource(description: configuration.vm, preloadLibrary: preloadLibrary,
                                              tracking: configuration.dirtyTracking, extraArguments: devices.qemuArguments,
                                              logger: logger) { exits.record($0) }
        } catch {
            devices.stop()
            throw error
        }
        self.devices = devices
        self.exits = exits
    }

    /// Why QEMU is gone, or nil while it runs.
    public var failure: String? { exits.error.map { "QEMU exited: \($0)" } }

    /// Stops QEMU, then the devices.
    public func stop() {
        source.shutdown()
        devices.stop()
    }
}
