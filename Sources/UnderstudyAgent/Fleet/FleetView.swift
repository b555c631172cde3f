/// Every VM of the fleet, from the registry's entries, one row each, problems first:
/// unprotected, lagging, drill overdue or failed, fenced, then healthy; by VM id within each.
///
/// A VM's rows come from the entries its nodes publish (usually a primary's and a backup's). Its
/// problem is the first that applies:
/// - **unprotected**: no node publishes it as primary, or the primary is not `protecting` (nor
///   `switching over`): connecting, syncing, holding output, unprotected, stopped; also two nodes
///   publishing it as primary at once;
/// - **lagging**: the primary reports its lag over the recovery point objective, or its lag is
///   over `Thresholds.lag` (5 s by default, for a primary without an objective);
/// - **drill**: the last drill failed, or no drill passed within `Thresholds.drillOverdue`
///   (7 days by default, "this week"; never drilled counts as overdue; `nil`: drills are not checked);
/// - **fenced**: a node of the VM reports it `fenced` (a stale copy another node superseded);
/// - **healthy** otherwise.
public struct FleetView: Sendable {
    public struct Thresholds: Sendable, Equatable {
        /// A primary's lag over this is lagging (when it has no objective of its own to judge by).
        public var lag: Duration
        /// No passed drill for this long is overdue; nil: drills are not checked.
        public var drillOverdue: Duration?

        public init(lag: Duration = .seconds(5), drillOverdue: Duration? = .seconds(7 * 86_400)) {
            self.lag = lag
            self.drillOverdue = drillOverdue
        }
    }

    /// What is wrong with a VM, in the order the view shows them.
    public enum Problem: String, Sendable, Codable, CaseIterable, Comparable {
        case unprotected, lagging
        /// Drill overdue or failed.
        case drill
        case fenced, healthy

        public static func < (lhs: Problem, rhs: Problem) -> Bool {
            allCases.firstIndex(of: lhs)! < allCases.firstIndex(of: rhs)!
        }

        /// For tables and summaries.
        public var label: String { self == .drill ? "drill overdue or failed" : rawValue }
    }

    /// One VM across its nodes.
    public struct Row: Sendable, Codable, Equatable {
        public var vm: String
        public var problem: Problem
        /// Why (empty when healthy).
        public var reason: String
        /// The host running it (the primary's entry), and the host keeping its replica (the
        /// backup's entry); `backupNode`: the primary's peer, named even when it publishes nothing.
        public var primaryHost: String?
        public var backupHost: String?
        public var backupNode: String?
        /// The primary's phase, or the first entry's when none is a primary.
        public var state: String
        public var protectionMode: String?
        public var committedEpoch: UInt64?
        public var lagMilliseconds: Double?
        public var pauseMillisecondsP99: Double?
        public var lastDrillAt: Double?
        public var lastDrillPassed: Bool?
        public var lastDrillRecoverySeconds: Double?
    }

    public let vms: [Row]
    /// The hosts by name.
    public let hosts: [HostCapacity]
    /// The instant the view describes (seconds since 1970).
    public let now: Double

    /// - Parameter now: seconds since 1970, the instant drill ages are measured at.
    public init(records: [FleetRecord], hosts: [HostCapacity], now: Double, thresholds: Thresholds = Thresholds()) {
        let byVM = Dictionary(grouping: records, by: \.vm)
        vms = byVM.map { vm, entries in Self.row(vm: vm, entries: entries.sorted { $0.host < $1.host }, now: now, thresholds: thresholds) }
            .sorted { ($0.problem, $0.vm) < ($1.problem, $1.vm) }
        self.hosts = hosts.sorted { $0.host < $1.host }
        self.now = now
    }

    /// How many VMs have each problem.
    public var counts: [Problem: Int] { Dictionary(grouping: vms, by: \.problem).mapValues(\.count) }

    private static func row(vm: String, entries: [FleetRecord], now: Double, thresholds: Thresholds) -> Row {
        let primaries = entries.filter { $0.role == .primary }
        let running = primaries.filter { !["fenced", "stopped", "switched over"].contains($0.state) }
        let primary = running.first ?? primaries.first
        // The primary's peer; a lost backup that came back and stood down (a spare took its place) is not the VM's backup.
        let backups = entries.filter { $0.role == .backup }
        let backup = backups.first { $0.node == primary?.peer } ?? backups.first { $0.state != BackupStatus.Phase.stoodDown.rawValue } ?? backups.first
        let drill = entries.filter { $0.lastDrillAt != nil }.max { $0.lastDrillAt! < $1.lastDrillAt! }
        var row = Row(vm: vm, problem: .healthy, reason: "", primaryHost: primary?.host, backupHost: backup?.host, backupNode: primary?.peer,
                      state: (primary ?? entries[0]).state, protectionMode: primary?.protectionMode,
                      committedEpoch: primary?.committedEpoch ?? backup?.committedEpoch, lagMilliseconds: primary?.lagMilliseconds,
                      pauseMillisecondsP99: primary?.pauseMillisecondsP99, lastDrillAt: drill?.lastDrillAt, lastDrillPassed: drill?.lastDrillPassed,
                      lastDrillRecoverySeconds: drill?.lastDrillRecoverySeconds)
        (row.problem, row.reason) = classify(entries: entries, running: running, drill: drill, now: now, thresholds: thresholds)
        return row
    }

    private static func classify(entries: [FleetRecord], running: [FleetRecord], drill: FleetRecord?, now: Double,
                                 thresholds: Thresholds) -> (Problem, String) {
        guard let primary = running.first else {
            let states = entries.map { "\($0.host) \($0.role.rawValue) \($0.state)" }.joined(separator: ", ")
            return (.unprotected, "no host runs it (\(states))")
        }
        if running.count > 1 {
            return (.unprotected, "\(running.count) hosts publish it as primary: \(running.map(\.host).joined(separator: ", "))")
        }
        if !["protecting", "switching over"].contains(primary.state) {
            return (.unprotected, "primary on \(primary.host) is \(primary.state)" + (primary.detail.map { ": \($0)" } ?? ""))
        }
        if primary.recoveryPointExceeded == true {
            return (.lagging, "lag \(milliseconds(primary.lagMilliseconds)) over the recovery point objective")
        }
        if let lag = primary.lagMilliseconds, lag > thresholds.lag.seconds * 1000 {
            return (.lagging, "lag \(milliseconds(lag)) over \(milliseconds(thresholds.lag.seconds * 1000))")
        }
        if let overdue = thresholds.drillOverdue {
            guard let drill, let at = drill.lastDrillAt else { return (.drill, "no drill on record") }
            if drill.lastDrillPassed == false { return (.drill, "last drill on \(drill.host) failed \(age(now - at)) ago") }
            if now - at > overdue.seconds { return (.drill, "last drill \(age(now - at)) ago") }
        }
        if let fenced = entries.first(where: { $0.state == "fenced" }) {
            return (.fenced, "the copy on \(fenced.host) is fenced" + (fenced.detail.map { ": \($0)" } ?? ""))
        }
        return (.healthy, "")
    }

    private static func milliseconds(_ value: Double?) -> String {
        // Registry entries are any node's words: formatted, never converted (1e300 would trap).
        value.map { String(format: "%.0f ms", $0) } ?? "unknown"
    }

    /// "3 d", "5 h", "12 min", "40 s": the largest unit that fits.
    static func age(_ seconds: Double) -> String {
        let whole = seconds.isFinite ? Int(min(max(0, seconds), 1e15)) : 0
        if whole >= 86_400 { return "\(whole / 86_400) d" }
        if whole >= 3600 { return "\(whole / 3600) h" }
        if whole >= 60 { return "\(whole / 60) min" }
        return "\(whole) s"
    }
}
