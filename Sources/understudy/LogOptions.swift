import ArgumentParser
import Logging
import UnderstudyAgent

/// Log options shared by the commands that run agents.
struct LogOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical (default: the configuration's log.level, else warning).")
    var logLevel: Logger.Level?

    @Option(name: .long, help: "Log format: auto (human on a terminal, JSON lines otherwise), human, json (default: log.format, else auto).")
    var logFormat: LogFormat?

    /// Installs the process's log handler: the command line first, then the configuration's
    /// `[log]`, then the defaults.
    func bootstrap(_ configuration: AgentConfiguration? = nil) -> Logger { bootstrapReloadable(configuration).logger }

    /// `bootstrap`, with the control that changes the level later (SIGHUP).
    func bootstrapReloadable(_ configuration: AgentConfiguration?) -> (logger: Logger, levels: LogLevelControl) {
        let levels = LogLevelControl(logLevel ?? configuration?.logLevel ?? AgentLogHandler.defaultLevel)
        let format = logFormat ?? configuration?.logFormat ?? .auto
        return (AgentLogHandler.bootstrap(format: format, control: levels), levels)
    }
}
