import Foundation
import Synchronization
import Logging
import UnderstudyDisk
import UnderstudyNetwork
import UnderstudyProtocol
import UnderstudyQEMU
import UnderstudySystem

/// The guest's disks and NICs as this agent serves them: an NBD server per disk (so that the agent
/// sees every write) and an output gate per NIC, plus the QEMU options that attach the guest to
/// them. Started before QEMU (QEMU connects to every socket once, at start). The gates are sealed
/// at the same epoch boundary and released by the same acknowledgement.
public final class GuestDevices: @unchecked Sendable {
    /// One guest NIC: the TAP it reaches the network through on this node, and its address.
    public struct NIC: Sendable, Equatable {
        public var tap: String
        public var mac: String

        public init(tap: String, mac: String) {
            self.tap = tap
            self.mac = mac
        }
    }

    /// The most NICs a VM may have.
    public static let maximumNICs = 4

    public enum Role: Sendable {
        /// The primary: disk writes are recorded per epoch and output waits for acknowledgement
        /// (unless `buffering` is false, the unsafe measurement mode).
        case protected(buffering: Bool)
        /// A VM with no backup yet (activated on the former backup, or a primary whose backup is
        /// gone): output leaves at once until a backup is synchronised, and disk writes are
        /// recorded so that protection can start at any time.
        case unprotected
    }

    /// One server per disk, in the guest's order.
    public let disks: [NBDServer]
    /// The images the guest's disks are, as the disk servers have them open, as one address
    /// space; nil without a disk.
    public let diskSet: DiskSet?
    /// The per-epoch record of the writes to every disk, in that space; nil without a disk.
    public let recorder: DiskEpochRecorder?
    /// One gate per NIC, in the guest's order.
    public let gates: [OutputGate]
    public let nics: [NIC]
    /// True while the gate holds frames of the open epoch: output-triggered checkpoints wait on it.
    public let outputWaiting = WaitableFlag()
    public let qemuArguments: [String]
    /// Set by `holdOutputFromNextEpoch`, consumed by the next `seal`.
    private let holdFromNextEpoch = Atomic<Bool>(false)

    /// - Parameters:
    ///   - diskImages: the raw images replicated as the VM's `DiskSet`, in order
    ///     (`VMDescription.replicatedImages`: the guest's disks, then a UEFI variable store; the
    ///     replica's on an activated backup).
    ///   - nics: the guest's NICs, in order (none: no network).
    ///   - fence: when given, no frame reaches the TAP unless this node is provably the active
    ///     copy (`ActiveCopyFence.isValid`, asked per frame); nil for a sandboxed clone.
    ///   - policy: the gate's firewall, now and after every reload.
    public init(vm: VMDescription, diskImages: [String], nics: [NIC], outputBufferBytes: Int, role: Role,
                fence: ActiveCopyFence?, policy: GatePolicyControl, logger: Logger) throws {
        try FileManager.default.createDirectory(atPath: vm.runDirectory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        var arguments: [String] = []
        let recorder = diskImages.isEmpty ? nil : DiskEpochRecorder()
        var disks: [NBDServer] = []
        var base: UInt64 = 0
        for (index, image) in diskImages.enumerated() {
            let socket = "\(vm.runDirectory)/\(VirtioDisk.nodeName(index)).sock"
            do {
                let server = try NBDServer(imagePath: image, socketPath: socket, exportName: vm.id,
                                           observer: OffsetDiskWriteObserver(base: base, reportingTo: recorder!), logger: logger)
                disks.append(server)
                base += server.image.size
            } catch {
                for server in disks { server.stop() }
                throw error
            }
            // Past the guest's disks: the UEFI variable store, attached as the firmware's flash (VMDescription.machineOption).
            arguments += index < vm.diskImages.count
                ? NBDServer.qemuArguments(socketPath: socket, exportName: vm.id, nodeName: VirtioDisk.nodeName(index),
                                          deviceOptions: vm.virtio.deviceOptions)
                : NBDServer.blockdevArguments(socketPath: socket, exportName: vm.id, nodeName: VMDescription.uefiVariablesNodeName)
        }
        self.disks = disks
        diskSet = disks.isEmpty ? nil : DiskSet(disks.map(\.image))
        self.recorder = recorder
        let mode: OutputGate.Mode = switch role {
        case .protected(buffering: true): .outputCommit
        case .protected(buffering: false): .unsafeUnbuffered
        case .unprotected: .unprotected
        }
        var gates: [OutputGate] = []
        for (index, nic) in nics.enumerated() {
            let socket = "\(vm.runDirectory)/net\(index == 0 ? "" : "\(index)").sock"
            do {
                // One flag for all: each gate sets it when it holds a frame of the open epoch, and
                // all are sealed together, which clears it.
                let gate = try OutputGate(guestSocketPath: socket, tapName: nic.tap, bufferLimit: outputBufferBytes, mode: mode,
                                          mayTransmit: { fence?.isValid ?? true }, outputWaiting: outputWaiting, policy: policy.policy,
                                          logger: logger)
                policy.attach(gate)
                gates.append(gate)
            } catch {
                for gate in gates { gate.stop() }
                for server in disks { server.stop() }
                throw error
            }
            arguments += OutputGate.qemuArguments(socketPath: socket, mac: nic.mac, netdevID: "net\(index)", deviceOptions: vm.virtio.deviceOptions)
        }
        self.gates = gates
        self.nics = nics
        qemuArguments = arguments
    }

    /// Cuts the disk and network streams at checkpoint `epoch`. Runs inside the capture, after
    /// QMP `stop` returned: every disk write of the epoch has been replied to (so recorded), and
    /// output the gate reads from now on belongs to the next epoch.
    public func seal(epoch: UInt64, into checkpoint: CapturedCheckpoint) {
        if let recorder {
            do {
                checkpoint.diskChanges = try recorder.seal()
            } catch {
                checkpoint.diskChangesLost = error
            }
        }
        for gate in gates { gate.seal(epoch: epoch) }
        if holdFromNextEpoch.exchange(false, ordering: .sequentiallyConsistent) { for gate in gates { gate.setMode(.outputCommit) } }
    }

    /// Makes the guest's disk writes so far durable while the guest still runs, right before a
    /// capture stops it (`QEMUCheckpointSource`'s `beforeStop`). QEMU's stop flushes the disk with
    /// the guest paused (vm_stop's bdrv_flush_all: an NBD FLUSH this agent makes durable with
    /// fdatasync), and with writes since the guest's last flush that sync took up to seconds of
    /// pause; now it has only the writes of the last moments left. Only durability comes
    /// earlier; a failure is left to that flush to report.
    public func synchronizeDiskBeforeStop() { try? diskSet?.synchronize() }

    /// A backup is being synchronised. Output that passes at once now (no backup protected the
    /// VM) keeps passing until the first checkpoint's boundary, and waits for acknowledgements
    /// from then on: until that checkpoint commits the backup has nothing to take over from, so
    /// holding output for the whole synchronisation (seconds) would only stall the VM's network.
    /// Output already held stays held until the first acknowledgement.
    public func holdOutputFromNextEpoch() {
        guard gates.first?.mode == .unprotected else { return }
        holdFromNextEpoch.store(true, ordering: .sequentiallyConsistent)
    }

    /// The synchronisation failed before its first checkpoint: output goes on passing.
    public func cancelPendingHold() {
        holdFromNextEpoch.store(false, ordering: .sequentiallyConsistent)
    }

    /// Forgets the disk writes recorded so far: a new backup session starts with a full copy of
    /// the disk, taken after this call, and the writes recorded from here on replay on top of it.
    /// Between sessions it also keeps the record from growing without bound.
    public func discardRecordedDiskWrites() {
        // An overflowed record is forgotten too: the full copy that follows makes it moot.
        _ = try? takeRecordedDiskWrites()
    }

    /// Takes the disk writes recorded since the last seal, in order (kept for a catch-up while
    /// no session runs).
    /// - Throws: `DiskError.recordOverflow` when the record passed its cap and was dropped.
    public func takeRecordedDiskWrites() throws(DiskError) -> [DiskChange] { try recorder?.seal() ?? [] }

    /// Output commit on (a backup is being synchronised) or off (no backup: frames pass).
    public func setOutputMode(_ mode: OutputGate.Mode) { for gate in gates { gate.setMode(mode) } }

    /// Waits until released output has left for the network (see `OutputGate.waitUntilSent`).
    public func waitUntilOutputSent(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        return gates.allSatisfy { $0.waitUntilSent(timeout: max(.zero, deadline - .now)) }
    }

    /// The backup acknowledged `epoch`: its output may leave.
    public func release(through epoch: UInt64) { for gate in gates { gate.release(through: epoch) } }

    /// The output mode (the same on every gate); nil without a NIC.
    public var outputMode: OutputGate.Mode? { gates.first?.mode }

    /// The counters of all gates added up; nil without a NIC.
    public var outputStatistics: OutputGate.Statistics? {
        gates.dropFirst().reduce(gates.first?.statistics) { total, gate in total.map { $0 + gate.statistics } }
    }

    /// The firewall's counters of all gates added up, rule by rule; nil without a NIC.
    public var policyStatistics: GatePolicyStatistics? {
        gates.dropFirst().reduce(gates.first?.policyStatistics) { total, gate in total.map { $0 + gate.policyStatistics } }
    }

    /// Tells the switches where every NIC of the VM is now (see `OutputGate.announce`).
    public func announce() {
        for (gate, nic) in zip(gates, nics) {
            if let mac = ReverseARP.macAddress(nic.mac) { gate.announce(mac: mac) }
        }
    }

    /// Stops serving; call after QEMU has stopped.
    public func stop() {
        for gate in gates { gate.stop() }
        for server in disks { server.stop() }
    }
}
