import ArgumentParser
import Foundation
import Logging
import UnderstudyAgent
import UnderstudyTransport

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show what the agent on this node is doing.")

    @Option(name: .long, help: "The node's configuration file (to find the agent's control socket).")
    var config: String?

    @Option(name: .long, help: "The agent's control socket, instead of --config.")
    var socket: String?

    @Flag(name: .long, help: "Print JSON.")
    var json = false

    @Flag(name: .long, help: "Keep showing the status, refreshed every --interval seconds, until interrupted.")
    var watch = false

    @Option(name: .long, help: "Seconds between refreshes with --watch.")
    var interval: Double = 1

    func validate() throws {
        guard (config == nil) != (socket == nil) else { throw ValidationError("give either --config or --socket") }
        guard interval >= 0.05 && interval <= 3600 else { throw ValidationError("--interval must be between 0.05 and 3600 seconds") }
        guard !(watch && json) else { throw ValidationError("--watch shows a table for people; poll --json for scripts") }
    }

    func run() throws {
        let path = try socket ?? ConfigOptions(config: config!).load().controlSocket
        guard watch else { return try show(path) }
        redraw(every: interval) { try show(path) }
    }

    private func show(_ path: String) throws {
        let reply = try ControlServer.request("status", path: path)
        if json {
            print(String(decoding: reply, as: UTF8.self), terminator: "")
            return
        }
        let status = try JSONDecoder().decode(AgentStatus.self, from: reply)
        print(status.humanReadable)
    }
}
