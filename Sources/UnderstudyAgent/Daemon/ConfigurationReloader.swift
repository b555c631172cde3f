import Foundation
import Logging
import Synchronization
import UnderstudyNetwork

/// SIGHUP for `understudy run`: reads the configuration file again, validates all of it, and
/// applies what can change safely while the VM runs — the log level and the gate policy
/// (`[[network.rules]]`, `network.default_action`: swapped whole, at once). Every other change is
/// reported as taking effect at the next start; an invalid file changes nothing.
public final class ConfigurationReloader: Sendable {
    /// What a reload did.
    public struct Outcome: Sendable, Equatable {
        /// Keys applied now.
        public var applied: [String] = []
        /// Changed keys that apply at the next start.
        public var atNextStart: [String] = []
        /// The file was unreadable or invalid: nothing changed.
        public var error: String?
    }

    /// Keys a running agent applies on reload (a rule's keys without their index: "network.rules.action").
    static let reloadable: Set<String> = GatePolicy.knownKeys.union(["log.level"])

    private let path: String
    private let current: Mutex<TOMLDocument>
    private let levels: LogLevelControl
    /// `--log-level`, which wins over the file.
    private let levelOverride: Logger.Level?
    /// Where a changed gate policy goes; nil: the reload leaves the policy alone.
    private let policy: GatePolicyControl?
    private let logger: Logger

    public init(path: String, loaded: TOMLDocument, levels: LogLevelControl, levelOverride: Logger.Level?, policy: GatePolicyControl? = nil,
                logger: Logger) {
        self.path = path
        self.policy = policy
        current = Mutex(loaded)
        self.levels = levels
        self.levelOverride = levelOverride
        self.logger = logger
    }

    @discardableResult
    public func reload() -> Outcome {
        var outcome = Outcome()
        let document: TOMLDocument
        let configuration: AgentConfiguration
        do {
            document = try TOMLDocument(contentsOfFile: path)
            configuration = try AgentConfiguration(document: document)
        } catch {
            outcome.error = "\(error)"
            logger.error("reload failed, the running configuration stays", metadata: ["error": "\(error)"])
            return outcome
        }
        let previous = current.withLock { old in
            defer { old = document }
            return old
        }
        let changed = Set(previous.keys).union(document.keys).filter { previous.value($0) != document.value($0) }.sorted()
        for key in changed {
            if Self.reloadable.contains(TOMLDocument.withoutIndices(key)) { outcome.applied.append(key) } else { outcome.atNextStart.append(key) }
        }
        if outcome.applied.contains("log.level") {
            if let levelOverride {
                logger.notice("log.level changed in the file, but --log-level \(levelOverride) wins")
            } else {
                levels.level = configuration.logLevel ?? AgentLogHandler.defaultLevel
            }
        }
        if let policy, outcome.applied.contains(where: { $0 != "log.level" }) {
            policy.set(configuration.policy)
            logger.notice("gate policy replaced: \(configuration.policy.rules.count) rules, default \(configuration.policy.defaultAction.rawValue)")
        }
        logger.notice("configuration reloaded", metadata: [
            "file": "\(path)",
            "applied": "\(outcome.applied.isEmpty ? "nothing" : outcome.applied.joined(separator: ", "))",
            "at-next-start": "\(outcome.atNextStart.isEmpty ? "nothing" : outcome.atNextStart.joined(separator: ", "))",
        ])
        return outcome
    }
}
