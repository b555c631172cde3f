/// The `[inspect]` table: scheduled inspections of the replica on the backup (`understudy inspect`
/// run by the backup agent itself).
///
/// ```toml
/// [inspect]
/// every_s = 3600                        # run one this often while the node is the backup; absent: never
/// command = ["clamscan", "-r", "--infected"]  # the mount directory is appended (or replaces "{}")
/// memory = false                        # also expose the checkpoint's memory image (UNDERSTUDY_INSPECT_MEMORY)
/// timeout_s = 1800                      # a command still running then is stopped and counts as failed
/// ```
public struct InspectionConfiguration: Sendable, Equatable {
    /// How often the backup inspects its replica; nil: only `understudy inspect` does.
    public var every: Duration?
    /// What runs on the mounted replica; required with `every`.
    public var command: InspectionCommand?
    public var memory: Bool
    public var timeout: Duration

    static let knownKeys: Set<String> = ["inspect.every_s", "inspect.command", "inspect.memory", "inspect.timeout_s"]

    public init(every: Duration? = nil, command: InspectionCommand? = nil, memory: Bool = false, timeout: Duration = .seconds(1800)) {
        self.every = every
        self.command = command
        self.memory = memory
        self.timeout = timeout
    }

    init(document d: TOMLDocument) throws(ConfigurationError) {
        self.init()
        every = try d.integer("inspect.every_s", in: 10...31_536_000).map { .seconds($0) }
        if let words = try d.strings("inspect.command") {
            guard let parsed = InspectionCommand(words) else {
                throw ConfigurationError(source: d.source, line: d.line(of: "inspect.command"), key: "inspect.command",
                                         message: "empty: give the program and its arguments, e.g. [\"clamscan\", \"-r\"]")
            }
            command = parsed
        }
        if every != nil, command == nil {
            throw ConfigurationError(source: d.source, line: d.line(of: "inspect.every_s"), key: "inspect.command",
                                     message: "missing: inspect.every_s schedules inspections, inspect.command says what they run")
        }
        memory = try d.bool("inspect.memory") ?? false
        timeout = .seconds(try d.integer("inspect.timeout_s", in: 1...86_400) ?? 1800)
    }
}
