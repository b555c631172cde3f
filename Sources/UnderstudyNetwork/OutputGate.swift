import CUnderstudyShims
import Foundation
import Logging
import Synchronization
import UnderstudySystem
#if canImport(Glibc)
import Glibc
#endif

/// The primary's output gate: sits between the guest NIC (QEMU `-netdev stream`, connected to
/// a unix socket this gate listens on) and a TAP device on the host.
///
/// Frames from the guest are held per epoch (`OutputGateStateMachine`) until the backup has
/// acknowledged the checkpoint containing the guest state that produced them (output commit);
/// frames from the TAP to the guest pass at once.
///
/// Threads: `gate-guest` accepts QEMU's connection and reads its frames; `gate-tap` forwards
/// frames from the TAP to the guest; `gate-send` writes released frames to the TAP, so that
/// `release(through:)` never waits for the TAP. One QEMU connection at a time: a restarted QEMU
/// is accepted once the previous connection has closed.
public final class OutputGate: @unchecked Sendable {
    /// When guest frames may leave.
    public enum Mode: Sendable, Equatable, CustomStringConvertible {
        /// Output commit: once the checkpoint that produced them is acknowledged.
        case outputCommit
        /// At once, because no backup protects the VM (an activated backup, before it is
        /// protected again): there is nothing to wait for.
        case unprotected
        /// At once although a backup protects the VM: output commit is off to measure what it
        /// costs. Unsafe; warned about at start and every 10 s while frames pass.
        case unsafeUnbuffered

        public var description: String {
            switch self {
            case .outputCommit: "output commit"
            case .unprotected: "unprotected (frames pass at once)"
            case .unsafeUnbuffered: "OUTPUT BUFFERING OFF (unsafe)"
            }
        }
    }

    /// Counters since the gate started.
    public struct Statistics: Sendable, Equatable {
        /// Guest → network frames inside the output-commit buffer: held, dropped because the
        /// buffer was full, released, passed unbuffered; the last sealed and released epochs.
        public var buffer = OutputGateStateMachine.Statistics()
        /// Released or passed frames written to the TAP.
        public var sentFrames: UInt64 = 0
        public var sentBytes: UInt64 = 0
        /// Released or passed frames dropped on the way to the TAP: the write failed (EAGAIN,
        /// ENOBUFS, EIO when the TAP is down, ...) or too many bytes were already queued for it.
        public var sendDroppedFrames: UInt64 = 0
        public var sendDroppedBytes: UInt64 = 0
        /// Released or passed frames dropped because, when their turn came, this node could not
        /// prove it is the active copy of the VM (`mayTransmit` said no).
        public var fencedFrames: UInt64 = 0
        public var fencedBytes: UInt64 = 0
        /// Network → guest frames written to QEMU.
        public var framesToGuest: UInt64 = 0
        public var bytesToGuest: UInt64 = 0
        /// Network → guest frames dropped because no QEMU was connected or the write failed.
        public var framesToGuestDropped: UInt64 = 0
        /// Connections accepted from QEMU, and those closed because of a malformed frame length.
        public var guestConnections: UInt64 = 0
        public var malformedConnections: UInt64 = 0
        /// True while a QEMU is connected.
        public var guestConnected = false

        public init() {}
    }

    /// The longest frame accepted from QEMU (its own limit, NET_BUFSIZE: 65536 + 4096 bytes).
    public static let maxFrameLength = GuestSocket.maxFrameLength

    public let guestSocketPath: String
    public let tapName: String
    private let currentMode: Mutex<Mode>
    private let core: GateCore
    /// The running threads; empty once stopped.
    private let threads: Mutex<[JoinableThread]>

    /// Listens at `guestSocketPath` (mode 0600; a stale socket file is replaced) for QEMU's
    /// connection and attaches to the TAP device `tapName`, creating it when it does not exist.
    /// Start the gate before QEMU: QEMU 7.2 connects once, at startup, and never retries.
    ///
    /// - Parameters:
    ///   - bufferLimit: guest frame bytes held at most; when full, new guest frames are dropped.
    ///   - mode: when guest frames may leave.
    ///   - mayTransmit: asked right before each frame is written to the TAP, whatever the mode;
    ///     false drops the frame (counted in `fencedFrames`). The agent answers whether this node
    ///     is provably the active copy (its witness lease is valid), so that a node that stalled
    ///     (SIGSTOP, a long pause) and lost its lease meanwhile sends nothing, not even frames it
    ///     read or released before the stall. Must be cheap and must not block.
    ///   - policy: the firewall every frame passes through first, both ways (`setPolicy` swaps it).
    ///   - outputWaiting: kept equal to whether the open epoch holds frames (set by the first
    ///     frame held after a seal, cleared by the seal), so that the checkpoint loop can end
    ///     the epoch early for a waiting client; nil: nobody asks.
    public init(guestSocketPath: String, tapName: String, bufferLimit: Int = OutputGateStateMachine.defaultBufferLimit,
                mode: Mode = .outputCommit, mayTransmit: @escaping @Sendable () -> Bool = { true },
                outputWaiting: WaitableFlag? = nil, policy: GatePolicy = .allowAll, logger: Logger) throws(NetworkError) {
        let buffering = mode == .outputCommit
        guard bufferLimit > 0 else { throw .invalidConfiguration("the buffer limit must be positive, not \(bufferLimit)") }
        guard !tapName.isEmpty, tapName.utf8.count < Int(IFNAMSIZ) else {
            throw .invalidConfiguration("TAP name \"\(tapName)\" must have 1 to \(IFNAMSIZ - 1) characters")
        }
        self.guestSocketPath = guestSocketPath
        currentMode = Mutex(mode)
        self.tapName = tapName
        var logger = logger
        logger[metadataKey: "tap"] = "\(tapName)"
        let wake = try OutputGate.wakePipe()
        let listener: Int32
        let tap: Int32
        do throws(NetworkError) {
            do throws(UnixSocket.ListenError) {
                listener = try UnixSocket.listen(at: guestSocketPath, backlog: 1)
            } catch {
                throw .listen(error)
            }
            do throws(NetworkError) {
                tap = try OutputGate.attachTAP(tapName)
            } catch {
                close(listener)
                unlink(guestSocketPath)
                throw error
            }
        } catch {
            close(wake.read)
            close(wake.write)
            throw error
        }
        core = GateCore(listener: listener, tap: tap, wake: wake, bufferLimit: bufferLimit, buffering: buffering,
                        warnUnbuffered: mode == .unsafeUnbuffered, mayTransmit: mayTransmit, outputWaiting: outputWaiting, policy: policy, logger: logger)
        if mode == .unsafeUnbuffered {
            logger.warning("OUTPUT BUFFERING IS OFF: guest frames leave before their checkpoint is acknowledged; a failover can expose output the backup never saw. Use only to measure the cost of buffering.")
        }
        let core = self.core
        threads = Mutex([
            JoinableThread(name: "gate-guest") { core.acceptAndRead() },
            JoinableThread(name: "gate-tap") { core.forwardToGuest() },
            JoinableThread(name: "gate-send") { core.sendToTAP() },
        ])
        logger.info("output gate listening for QEMU at \(guestSocketPath), \(mode), buffer limit \(bufferLimit) bytes")
    }

    deinit { stop() }

    /// The QEMU options that give the guest a virtio NIC connected to a gate listening at
    /// `socketPath`. Start the gate first: QEMU 7.2 connects once, when it starts, and does not
    /// retry (the NIC stays unplugged); when the gate's side closes, the guest NIC stays
    /// disconnected until QEMU restarts.
    ///
    /// - Parameter mac: the guest NIC's address, e.g. "52:54:00:12:34:56".
    /// - Parameter deviceOptions: more properties of the virtio-net device (e.g. its virtio transport).
    public static func qemuArguments(socketPath: String, mac: String, netdevID: String = "net0", deviceOptions: String = "") -> [String] {
        // QEMU's option syntax takes a doubled comma as a literal comma inside a value.
        let path = socketPath.replacingOccurrences(of: ",", with: ",,")
        return ["-netdev", "stream,id=\(netdevID),server=off,addr.type=unix,addr.path=\(path)",
                "-device", "virtio-net-pci,netdev=\(netdevID),mac=\(mac)" + (deviceOptions.isEmpty ? "" : ",\(deviceOptions)")]
    }

    /// Closes the open epoch as `epoch`: the guest frames read before this call leave once
    /// `epoch` is acknowledged; frames read afterwards belong to the next epoch. Call with the
    /// guest paused, after its checkpoint state was captured. Epochs must increase strictly; a
    /// number that does not is logged and ignored (its frames then leave with a later epoch).
    public func seal(epoch: UInt64) {
        core.seal(epoch: epoch)
    }

    /// The backup acknowledged every checkpoint up to `epoch`: hands the frames of the sealed
    /// epochs up to it to the sender thread, in order. Never waits for the TAP.
    public func release(through epoch: UInt64) {
        core.release(through: epoch)
    }

    /// Waits until every released frame has been written to the TAP (or `timeout` passes); true
    /// when so. A switchover calls it before the backup takes over, so that none of this node's
    /// frames reaches the LAN after the new copy announced itself there.
    public func waitUntilSent(timeout: Duration) -> Bool { core.waitUntilSent(timeout: timeout) }

    /// When guest frames may leave now.
    public var mode: Mode { currentMode.withLock { $0 } }

    /// Switches between `.outputCommit` (a backup is being synchronised: frames from now on wait
    /// for the next checkpoint's acknowledgement) and `.unprotected` (no backup: every held frame
    /// leaves now and later ones pass at once). The caller decides when passing is allowed: only
    /// when no other copy of the VM can be active. The unsafe mode is chosen at start only.
    public func setMode(_ mode: Mode) {
        precondition(mode != .unsafeUnbuffered, "the unsafe unbuffered mode is chosen when the gate starts")
        // Unbuffered stays unbuffered: that measurement mode has no output commit to switch.
        let changed = currentMode.withLock { current in
            guard current != mode, current != .unsafeUnbuffered else { return false }
            current = mode
            return true
        }
        guard changed else { return }
        core.setHolding(mode == .outputCommit)
        core.logger.notice("output gate: \(mode)")
    }

    /// Announces the guest's NIC (`mac`) on the TAP now, ahead of the guest: a backup taking over
    /// sends it once it holds the fence, before QEMU has loaded the checkpoint, so that the
    /// switches send the VM's traffic (clients' retransmissions) here while it loads; QEMU queues
    /// what arrives and the guest receives it the moment it runs. It leaves like released output:
    /// only while this node may transmit (`mayTransmit`).
    public func announce(mac: [UInt8]) {
        core.transmitNow(ReverseARP.announcement(of: mac))
    }

    /// Hands `observer` a copy of every frame written to the guest from the TAP, with the epoch
    /// open when it was written (the last sealed + 1): the primary sends them to the backup
    /// (input-replay). Called on the gate's TAP thread: it must not wait. Nil stops it.
    public func observeGuestInput(_ observer: (@Sendable (_ epoch: UInt64, _ frame: [UInt8]) -> Void)?) {
        core.observeGuestInput(observer)
    }

    /// Gives the guest `frames` (Ethernet frames) as if they came from the TAP: a backup that took
    /// over replays the input its checkpoint may lack. Returns how many were written to QEMU.
    @discardableResult
    public func deliverToGuest(_ frames: [[UInt8]]) -> Int { core.deliverToGuest(frames) }

    /// A snapshot of the counters.
    public var statistics: Statistics { core.statistics }

    /// Swaps the firewall at once, between two frames: every frame is decided wholly by the old
    /// policy or wholly by the new one. Frames already held stay held (they passed the policy in
    /// force when they were read). Which counters carry over: `GatePolicyStateMachine.replace`.
    public func setPolicy(_ policy: GatePolicy) { core.setPolicy(policy) }

    /// The firewall's counters, rule by rule.
    public var policyStatistics: GatePolicyStatistics { core.policyStatistics }

    /// Closes the guest connection, the listener and the TAP, joins the threads and removes the
    /// socket file. Frames still held or queued for the TAP are discarded (never sent early).
    /// Idempotent.
    public func stop() {
        let running = threads.withLock { threads in
            defer { threads = [] }
            return threads
        }
        guard !running.isEmpty else { return }
        core.beginStopping()
        for thread in running { thread.join() }
        core.closeDescriptors()
        unlink(guestSocketPath)
        core.logger.info("output gate stopped")
    }

    /// Opens /dev/net/tun and attaches it to the TAP `name` (creating the device if needed).
    private static func attachTAP(_ name: String) throws(NetworkError) -> Int32 {
        let fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .io(operation: "open", detail: "/dev/net/tun", errno: errno) }
        guard us_tap_attach(fd, name) == 0 else {
            let code = errno
            close(fd)
            throw .io(operation: "attach to TAP", detail: name, errno: code)
        }
        return fd
    }

    /// A pipe the threads poll besides their descriptor: `stop` writes one byte, which stays
    /// unread, so every poll from then on returns at once. (A written byte rather than closing
    /// the write end, because a child process that inherited the write end would keep it open.)
    private static func wakePipe() throws(NetworkError) -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw .io(operation: "pipe", detail: "for the gate's wake-up", errno: errno) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }
}
