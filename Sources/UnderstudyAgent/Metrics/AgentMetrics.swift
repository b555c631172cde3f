import CoreMetrics
import Foundation
import Metrics
import Prometheus
import Synchronization
import UnderstudyNetwork
import UnderstudyProtocol

/// The agent's Prometheus metrics, all named `understudy_…` and labelled with the VM's id.
///
/// Each agent owns its own registry and records through a `PrometheusMetricsFactory` on it,
/// passed explicitly to every swift-metrics handle. The global `MetricsSystem` is deliberately
/// never bootstrapped: it can be bootstrapped only once per process, while tests (and the
/// demo) run a primary and a backup of the same VM in one process, whose metrics must not mix
/// under one `vm` label.
///
/// Recording is a handful of calls per checkpoint, never per page: counters are atomics,
/// histograms take a short lock. Values that already exist elsewhere (the output gate's held
/// frames, time since the last commit) are read when a scrape asks for them (`exposition`).
public final class AgentMetrics: Sendable {
    /// The roles `understudy_role` reports, one series each (1 for the current one).
    public enum Role: String, Sendable, CaseIterable {
        case primary, backup, starting
    }

    public let vm: String
    /// The registry the metrics live in; `exposition()` renders it.
    public let registry: PrometheusCollectorRegistry

    private let checkpoints: CoreMetrics.Counter
    private let checkpointReasons: [CheckpointReason: CoreMetrics.Counter]
    private let checkpointPause: CoreMetrics.Timer
    private let dirtyPages: CoreMetrics.Recorder
    private let rawBytes: CoreMetrics.Counter
    private let wireBytes: CoreMetrics.Counter
    private let deviceStateRawBytes: CoreMetrics.Counter
    private let deviceStateWireBytes: CoreMetrics.Counter
    private let framingBytes: CoreMetrics.Counter
    private let ackLatency: CoreMetrics.Timer
    private let checkpointsCommitted: CoreMetrics.Counter
    private let committedEpoch: CoreMetrics.Gauge
    private let lagEpochs: CoreMetrics.Gauge
    private let secondsSinceCommit: CoreMetrics.Gauge
    private let heartbeatRTT: CoreMetrics.Timer
    private let heldFrames: CoreMetrics.Gauge
    private let heldBytes: CoreMetrics.Gauge
    private let droppedFrames: CoreMetrics.Counter
    private let roles: [Role: CoreMetrics.Gauge]
    private let interval: CoreMetrics.Gauge
    private let intervalReasons: [CheckpointIntervalController.Reason: CoreMetrics.Gauge]
    private let linkBudget: CoreMetrics.Gauge
    private let checkpointDemand: CoreMetrics.Gauge
    private let replicaLag: CoreMetrics.Timer
    private let recoveryPointExceeded: CoreMetrics.Gauge
    private let witnessTermGauge: CoreMetrics.Gauge
    private let sessionStarts: [String: CoreMetrics.Counter]
    private let inspections: [Bool: CoreMetrics.Counter]
    private let inspectionLastSuccess: CoreMetrics.Gauge
    private let inspectionExitStatus: CoreMetrics.Gauge
    private let inspectionDuration: CoreMetrics.Gauge
    private let inspectionCheckpointAge: CoreMetrics.Gauge
    private let drills: [Bool: CoreMetrics.Counter]
    private let drillLastSuccess: CoreMetrics.Gauge
    private let drillLastFailed: CoreMetrics.Gauge
    private let drillRecovery: CoreMetrics.Gauge
    private let drillStateAge: CoreMetrics.Gauge

    private struct Bookkeeping {
        /// When the last checkpoint committed (or the metrics were created, before any did).
        var lastCommit: ContinuousClock.Instant
        /// The gate whose cumulative drop count was last seen, and that count: the counter
        /// advances by the difference, and starts afresh with a new gate (a new role).
        var dropSource: ObjectIdentifier?
        var dropsSeen: UInt64 = 0
        /// The same for the gate policy's counters, per series (rule index and name).
        var policySource: ObjectIdentifier?
        var policySeen: [[String]: [UInt64]] = [:]
    }

    private let bookkeeping: Mutex<Bookkeeping>
    /// For the series made at scrape time: the gate policy's rules change on reload.
    private let factory: PrometheusMetricsFactory
    /// Reads the values that live elsewhere (set by `PairNode`), just before each scrape.
    private let refresh = Mutex<(@Sendable (AgentMetrics) -> Void)?>(nil)

    /// Pause buckets around the 0.5–50 ms a checkpoint takes.
    static let pauseBuckets: [Duration] = [0.25, 0.5, 1, 2, 3, 5, 10, 20, 50, 100].map { .microseconds(Int64($0 * 1000)) }
    /// From loopback (well under a millisecond) to a congested WAN.
    static let ackBuckets: [Duration] = [0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000].map { .microseconds(Int64($0 * 1000)) }
    static let rttBuckets: [Duration] = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000].map { .microseconds(Int64($0 * 1000)) }
    static let dirtyPageBuckets: [Double] = [0, 10, 100, 1000, 10_000, 100_000, 1_000_000]
    /// A LAN pair's tens of milliseconds to a lagging WAN replica's minutes.
    static let lagBuckets: [Duration] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300].map { .milliseconds(Int64($0 * 1000)) }

    public init(vm: String) {
        self.vm = vm
        let registry = PrometheusCollectorRegistry()
        self.registry = registry
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            "understudy_checkpoint_pause_seconds": Self.pauseBuckets,
            "understudy_ack_latency_seconds": Self.ackBuckets,
            "understudy_heartbeat_rtt_seconds": Self.rttBuckets,
            "understudy_replica_lag_seconds": Self.lagBuckets,
        ]
        factory.valueHistogramBuckets = ["understudy_checkpoint_dirty_pages": Self.dirtyPageBuckets]
        self.factory = factory
        let labels = [("vm", vm)]
        checkpoints = CoreMetrics.Counter(label: "understudy_checkpoints_total", dimensions: labels, factory: factory)
        checkpointReasons = Dictionary(uniqueKeysWithValues: CheckpointReason.allCases.map { reason in
            (reason, CoreMetrics.Counter(label: "understudy_checkpoints_by_reason_total", dimensions: labels + [("reason", reason.rawValue)],
                                         factory: factory))
        })
        checkpointPause = CoreMetrics.Timer(label: "understudy_checkpoint_pause_seconds", dimensions: labels, factory: factory)
        dirtyPages = CoreMetrics.Recorder(label: "understudy_checkpoint_dirty_pages", dimensions: labels, aggregate: true, factory: factory)
        rawBytes = CoreMetrics.Counter(label: "understudy_checkpoint_raw_bytes_total", dimensions: labels, factory: factory)
        wireBytes = CoreMetrics.Counter(label: "understudy_checkpoint_wire_bytes_total", dimensions: labels, factory: factory)
        deviceStateRawBytes = CoreMetrics.Counter(label: "understudy_device_state_raw_bytes_total", dimensions: labels, factory: factory)
        deviceStateWireBytes = CoreMetrics.Counter(label: "understudy_device_state_wire_bytes_total", dimensions: labels, factory: factory)
        framingBytes = CoreMetrics.Counter(label: "understudy_checkpoint_framing_bytes_total", dimensions: labels, factory: factory)
        ackLatency = CoreMetrics.Timer(label: "understudy_ack_latency_seconds", dimensions: labels, factory: factory)
        checkpointsCommitted = CoreMetrics.Counter(label: "understudy_checkpoints_committed_total", dimensions: labels, factory: factory)
        committedEpoch = CoreMetrics.Gauge(label: "understudy_committed_epoch", dimensions: labels, factory: factory)
        lagEpochs = CoreMetrics.Gauge(label: "understudy_replication_lag_epochs", dimensions: labels, factory: factory)
        secondsSinceCommit = CoreMetrics.Gauge(label: "understudy_seconds_since_commit", dimensions: labels, factory: factory)
        heartbeatRTT = CoreMetrics.Timer(label: "understudy_heartbeat_rtt_seconds", dimensions: labels, factory: factory)
        heldFrames = CoreMetrics.Gauge(label: "understudy_output_held_frames", dimensions: labels, factory: factory)
        heldBytes = CoreMetrics.Gauge(label: "understudy_output_held_bytes", dimensions: labels, factory: factory)
        droppedFrames = CoreMetrics.Counter(label: "understudy_output_dropped_frames_total", dimensions: labels, factory: factory)
        var roles: [Role: CoreMetrics.Gauge] = [:]
        for role in Role.allCases {
            roles[role] = CoreMetrics.Gauge(label: "understudy_role", dimensions: labels + [("role", role.rawValue)], factory: factory)
        }
        self.roles = roles
        interval = CoreMetrics.Gauge(label: "understudy_checkpoint_interval_seconds", dimensions: labels, factory: factory)
        var reasons: [CheckpointIntervalController.Reason: CoreMetrics.Gauge] = [:]
        for reason in CheckpointIntervalController.Reason.allCases {
            reasons[reason] = CoreMetrics.Gauge(label: "understudy_checkpoint_interval_reason", dimensions: labels + [("reason", reason.rawValue)],
                                                factory: factory)
        }
        intervalReasons = reasons
        linkBudget = CoreMetrics.Gauge(label: "understudy_link_budget_bytes_per_second", dimensions: labels, factory: factory)
        checkpointDemand = CoreMetrics.Gauge(label: "understudy_checkpoint_demand_bytes_per_second", dimensions: labels, factory: factory)
        replicaLag = CoreMetrics.Timer(label: "understudy_replica_lag_seconds", dimensions: labels, factory: factory)
        recoveryPointExceeded = CoreMetrics.Gauge(label: "understudy_recovery_point_exceeded", dimensions: labels, factory: factory)
        witnessTermGauge = CoreMetrics.Gauge(label: "understudy_witness_term", dimensions: labels, factory: factory)
        sessionStarts = Dictionary(uniqueKeysWithValues: ["catch_up", "full_sync"].map { kind in
            (kind, CoreMetrics.Counter(label: "understudy_session_starts_total", dimensions: labels + [("kind", kind)], factory: factory))
        })
        inspections = Dictionary(uniqueKeysWithValues: [true, false].map { ok in
            (ok, CoreMetrics.Counter(label: "understudy_inspections_total", dimensions: labels + [("result", ok ? "success" : "failure")],
                                     factory: factory))
        })
        inspectionLastSuccess = CoreMetrics.Gauge(label: "understudy_inspection_last_success_timestamp_seconds", dimensions: labels, factory: factory)
        inspectionExitStatus = CoreMetrics.Gauge(label: "understudy_inspection_last_exit_status", dimensions: labels, factory: factory)
        inspectionDuration = CoreMetrics.Gauge(label: "understudy_inspection_last_duration_seconds", dimensions: labels, factory: factory)
        inspectionCheckpointAge = CoreMetrics.Gauge(label: "understudy_inspection_last_checkpoint_age_seconds", dimensions: labels, factory: factory)
        drills = Dictionary(uniqueKeysWithValues: [true, false].map { passed in
            (passed, CoreMetrics.Counter(label: "understudy_drills_total", dimensions: labels + [("result", passed ? "passed" : "failed")],
                                         factory: factory))
        })
        drillLastSuccess = CoreMetrics.Gauge(label: "understudy_drill_last_success_timestamp_seconds", dimensions: labels, factory: factory)
        drillLastFailed = CoreMetrics.Gauge(label: "understudy_drill_last_failed", dimensions: labels, factory: factory)
        drillRecovery = CoreMetrics.Gauge(label: "understudy_drill_recovery_seconds", dimensions: labels, factory: factory)
        drillStateAge = CoreMetrics.Gauge(label: "understudy_drill_state_age_seconds", dimensions: labels, factory: factory)
        bookkeeping = Mutex(Bookkeeping(lastCommit: .now))
        setRole(.starting)
    }

    // MARK: Recording, where the values are produced

    /// The primary captured a checkpoint taken for `reason`: its pause, its dirty pages, and how
    /// many checkpoints are now captured but not yet acknowledged (the replication lag in epochs).
    public func checkpointCaptured(_ reason: CheckpointReason, pause: Duration, dirtyPages pages: Int, unacknowledged: Int) {
        checkpoints.increment()
        checkpointReasons[reason]?.increment()
        checkpointPause.record(duration: pause)
        dirtyPages.record(pages)
        lagEpochs.record(unacknowledged)
    }

    /// The primary encoded a checkpoint: its bytes before compression and as framed on the wire;
    /// of them, the device state's before and after encoding, and the framing around the content.
    public func checkpointEncoded(rawBytes raw: Int, wireBytes wire: Int, deviceStateRawBytes deviceRaw: Int = 0,
                                  deviceStateWireBytes deviceWire: Int = 0, framingBytes framing: Int = 0) {
        rawBytes.increment(by: raw)
        wireBytes.increment(by: wire)
        deviceStateRawBytes.increment(by: deviceRaw)
        deviceStateWireBytes.increment(by: deviceWire)
        framingBytes.increment(by: framing)
    }

    /// The backup acknowledged a checkpoint `latency` after its capture (once per epoch).
    public func acknowledged(latency: Duration) {
        ackLatency.record(duration: latency)
    }

    /// Checkpoints up to `epoch` are committed: acknowledged (primary) or applied (backup);
    /// `unacknowledged` is what the primary still waits for (0 on the backup).
    /// - Parameter fresh: false when `epoch` committed earlier (a replica found at start), so
    ///   the time since the last commit keeps counting.
    public func committed(epoch: UInt64, unacknowledged: Int = 0, fresh: Bool = true) {
        committedEpoch.record(Int64(clamping: epoch))
        lagEpochs.record(unacknowledged)
        if fresh { bookkeeping.withLock { $0.lastCommit = .now } }
    }

    /// The backup committed (applied) one checkpoint.
    public func checkpointCommitted(epoch: UInt64) {
        checkpointsCommitted.increment()
        committed(epoch: epoch)
    }

    /// One of our heartbeats came back (heartbeat-echo): records its round trip on the
    /// replication connection. Heartbeats carry `Heartbeat.now()`, so the echo's sender time
    /// is on this process's clock.
    public func heartbeatEchoed(_ beat: Heartbeat) {
        let now = Heartbeat.now()
        // A time in the future is not one of ours (or not from this process): no sample.
        guard beat.senderTime <= now, now - beat.senderTime < UInt64(Int64.max) else { return }
        heartbeatRTT.record(duration: .nanoseconds(Int64(now - beat.senderTime)))
    }

    /// The adaptive interval's choice after a checkpoint: the interval, why, and the rates behind it.
    public func interval(_ decision: CheckpointIntervalController.Decision) {
        interval.record(decision.interval.seconds)
        for (reason, gauge) in intervalReasons { gauge.record(reason == decision.reason ? 1 : 0) }
        linkBudget.record(decision.budgetBytesPerSecond ?? 0)
        checkpointDemand.record(decision.demandBytesPerSecond)
    }

    /// Asynchronous mode: the replica's lag just before an acknowledgement (its peak).
    public func replicaLagged(peak: Duration) { replicaLag.record(duration: peak) }

    /// Asynchronous mode: the lag went over the recovery-point objective, or back under it.
    public func recoveryPoint(exceeded: Bool) { recoveryPointExceeded.record(exceeded ? 1 : 0) }

    /// The witness term this node claimed last (nil: none, or no witness: 0).
    public func witnessTerm(_ number: UInt64?) { witnessTermGauge.record(Double(number ?? 0)) }

    /// A session brought the backup up to date with a catch-up checkpoint or a full synchronisation.
    public func sessionStarted(catchUp: Bool) { sessionStarts[catchUp ? "catch_up" : "full_sync"]?.increment() }

    /// A scheduled inspection ended: its exit status (-1: it could not run), duration, the age of
    /// the checkpoint it scanned, and, when it succeeded, its start time.
    public func inspected(_ report: InspectionReport) {
        inspections[report.ok]?.increment()
        if report.ok { inspectionLastSuccess.record(report.startedAt) }
        inspectionExitStatus.record(Int64(report.exitStatus ?? -1))
        inspectionDuration.record(report.durationMs / 1000)
        if let age = report.stateAgeMs { inspectionCheckpointAge.record(age / 1000) }
    }

    /// A scheduled drill ended. `understudy_drill_last_failed` is the one to alert on; recovery
    /// time and state age are those of the last drill that passed (a failed one has no recovery).
    public func drilled(_ outcome: DrillOutcome) {
        drills[outcome.passed]?.increment()
        drillLastFailed.record(outcome.passed ? 0 : 1)
        guard outcome.passed else { return }
        drillLastSuccess.record(outcome.at)
        if let recovery = outcome.recoveryMs { drillRecovery.record(recovery / 1000) }
        if let age = outcome.stateAgeMs { drillStateAge.record(age / 1000) }
    }

    /// The node's role changed.
    public func setRole(_ current: Role) {
        for (role, gauge) in roles { gauge.record(role == current ? 1 : 0) }
    }

    /// The output gate's state: frames and bytes held now, and its cumulative count of dropped
    /// frames. `gate` identifies the gate, whose count starts at zero; nil: no gate (zeroes).
    public func output(gate: ObjectIdentifier?, heldFrames frames: UInt64, heldBytes bytes: UInt64, droppedFrames dropped: UInt64) {
        heldFrames.record(Int64(clamping: frames))
        heldBytes.record(Int64(clamping: bytes))
        guard let gate else { return }
        let newDrops: UInt64 = bookkeeping.withLock {
            let base = $0.dropSource == gate ? $0.dropsSeen : 0
            $0.dropSource = gate
            $0.dropsSeen = dropped
            return dropped >= base ? dropped - base : dropped
        }
        if newDrops > 0 { droppedFrames.increment(by: newDrops) }
    }

    /// The gate policy's cumulative counters (`OutputGate.policyStatistics`) of `gate`:
    /// `understudy_gate_rule_{frames,bytes,denied_frames}_total`, one series per rule (labels
    /// `rule`, its index, and `name`) plus `rule="default"` for the frames no rule matched. A
    /// rule's series advances by what its counter gained; a counter that went back (a reload
    /// reset it) or a new gate starts the difference afresh.
    public func gatePolicy(gate: ObjectIdentifier, _ statistics: GatePolicyStatistics) {
        let deniedByDefault = statistics.defaultAction == GateRule.Action.deny.rawValue ? statistics.unmatchedFrames : 0
        let series = statistics.rules.enumerated().map { index, rule in
            (labels: ["\(index)", rule.name], values: [rule.frames, rule.bytes, rule.deniedFrames])
        } + [(labels: ["default", "default \(statistics.defaultAction)"], values: [statistics.unmatchedFrames, statistics.unmatchedBytes, deniedByDefault])]
        let gains = bookkeeping.withLock { book in
            if book.policySource != gate {
                book.policySource = gate
                book.policySeen = [:]
            }
            return series.map { labels, values in
                let seen = book.policySeen[labels] ?? [0, 0, 0]
                book.policySeen[labels] = values
                return zip(values, seen).map { value, old in value >= old ? value - old : value }
            }
        }
        for ((labels, _), gain) in zip(series, gains) {
            let dimensions = [("vm", vm), ("rule", labels[0]), ("name", labels[1])]
            for (name, amount) in zip(["understudy_gate_rule_frames_total", "understudy_gate_rule_bytes_total",
                                       "understudy_gate_rule_denied_frames_total"], gain) {
                CoreMetrics.Counter(label: name, dimensions: dimensions, factory: factory).increment(by: Int64(clamping: amount))
            }
        }
    }

    // MARK: Exposition

    /// Sets what `exposition` reads just before rendering (values that live elsewhere).
    public func onScrape(_ body: @escaping @Sendable (AgentMetrics) -> Void) {
        refresh.withLock { $0 = body }
    }

    /// The Prometheus text exposition (format 0.0.4) of every metric, refreshed now.
    public func exposition() -> [UInt8] {
        if let body = refresh.withLock({ $0 }) { body(self) }
        let since = ContinuousClock.now - bookkeeping.withLock { $0.lastCommit }
        secondsSinceCommit.record(since.seconds)
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        registry.emit(into: &buffer)
        return buffer
    }
}
