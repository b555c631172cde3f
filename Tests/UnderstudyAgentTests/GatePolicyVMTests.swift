import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags
#if canImport(Glibc)
import Glibc
#endif

/// The gate policy of a protected counter guest, checked from the client namespace: a port the
/// rules block times out (its SYN never reaches the guest), a port they leave alone is refused by
/// the guest (its RST comes back through the gate). SIGHUP swaps the rules while the counter
/// client keeps asking: no reply is lost, none repeats, and the connection survives.
@Suite("gate policy on a protected guest", .serialized, .tags(.vm), .skippedInQuickLoop)
struct GatePolicyVMTests {
    enum Reach: Equatable {
        /// The guest answered the SYN with a RST: the port is reachable and closed.
        case refused
        case connected
        /// Nothing came back: the policy dropped the SYN.
        case silent
    }

    /// One connection attempt to the guest's `port` from the client namespace (on a thread of its own).
    static func reach(_ network: PairNetwork, port: UInt16) throws -> Reach {
        let outcome = ResultBox()
        JoinableThread(name: "policy-probe") {
            do {
                try network.enterClientNamespace()
            } catch {
                return outcome.fail("cannot enter the client namespace: \(error)")
            }
            do throws(TransportError) {
                close(try Endpoint(host: network.guestAddress, port: port).connect(timeoutMilliseconds: 3000))
                outcome.set(.connected)
            } catch {
                switch error {
                case .connectFailed(_, let code) where code == ECONNREFUSED: outcome.set(.refused)
                case .connectFailed(_, let code) where code == ETIMEDOUT: outcome.set(.silent)
                case .timedOut: outcome.set(.silent)
                default: outcome.fail("\(error)")
                }
            }
        }.join()
        return try outcome.get()
    }

    final class ResultBox: @unchecked Sendable {
        private let lock = NSLock()
        private var value: Result<Reach, HarnessError>?
        func set(_ reach: Reach) { lock.withLock { value = .success(reach) } }
        func fail(_ why: String) { lock.withLock { value = .failure(HarnessError(why)) } }
        func get() throws -> Reach { try lock.withLock { value }!.get() }
    }

    static func rule(port: UInt16) -> String {
        "[[network.rules]]\nname = \"closed\"\naction = \"deny\"\ndirection = \"to_guest\"\nprotocol = \"tcp\"\ndestination_ports = \"\(port)\"\n"
    }

    @Test func rulesBlockOnePortAllowAnotherAndSwapOnReload() throws {
        let directory = try TemporaryDirectory("gatepolicy")
        defer { directory.remove() }
        let network = try PairNetwork(tapCount: 2)
        defer { network.remove() }
        try preparePairDirectory(directory.path)
        let vm = "gp\(UUID().uuidString.prefix(6).lowercased())"
        let replicaDirectory = "/dev/shm/understudy-gatepolicy-\(vm)"
        defer {
            try? FileManager.default.removeItem(atPath: replicaDirectory)
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
        }
        let port = LoopbackPorts.free()
        // `run` needs both roles' keys: the primary's [backup] table, which it never uses here.
        let configs = try AgentPair.writeConfigs(
            in: directory.path, port: port, vm: vm, guest: TestGuest.image,
            cmdline: "understudy.run=counter-service \(network.guestCommandLine)", replicaDirectory: replicaDirectory,
            disks: ("\(directory.path)/primary-disk.img", "\(directory.path)/backup-disk.img"), taps: (network.taps[0], network.taps[1]),
            primaryNetwork: Self.rule(port: 7001),
            primaryExtra: "[backup]\nlisten = \"127.0.0.1:\(port + 1)\"\nreplica_dir = \"/dev/shm/understudy-\(vm)-p\"\n")
        let backup = try AgentPair.start(["backup", "--config", configs.backup], log: "\(directory.path)/backup.log")
        // `run`: the daemon, which reloads its configuration on SIGHUP.
        let primary = try AgentPair.start(["run", "--config", configs.primary, "--log-level", "info"], log: "\(directory.path)/primary.log")
        defer { AgentPair.stop([primary, backup], directory: directory.path) }
        let client = CounterClient(network: network)
        client.start()
        defer { client.stop() }
        func status() -> PrimaryStatus? {
            guard let reply = try? runCLI(["status", "--config", configs.primary, "--json"]) else { return nil }
            return (try? JSONDecoder().decode(AgentStatus.self, from: Data(reply.stdout.utf8)))?.primary
        }
        func primaryLog() -> String {
            String(((try? String(contentsOfFile: "\(directory.path)/primary.log", encoding: .utf8)) ?? "").suffix(2000))
        }
        try #require(client.waitForReplies(3, timeout: .seconds(120)), "the service never answered: \(client.errors); primary log: \(primaryLog())")
        try #require(eventually(within: .seconds(120), every: .milliseconds(200)) { status()?.state == .protecting },
                     "never protected: \(String(describing: status()))")

        #expect(try Self.reach(network, port: 7001) == .silent, "the rule drops the SYN to 7001")
        #expect(try Self.reach(network, port: 7002) == .refused, "7002 is not blocked: the guest's RST comes back")
        let before = try #require(status()?.gatePolicy)
        #expect(before.rules.first?.rule == "deny tcp to_guest port 7001" && (before.rules.first?.deniedFrames ?? 0) >= 1, "\(before)")

        // Swap the rules while the client keeps asking.
        let repliesBefore = client.history.count
        let text = try String(contentsOfFile: configs.primary, encoding: .utf8)
        try text.replacingOccurrences(of: "destination_ports = \"7001\"", with: "destination_ports = \"7002\"")
            .write(toFile: configs.primary, atomically: true, encoding: .utf8)
        kill(primary.processIdentifier, SIGHUP)
        #expect(eventually(within: .seconds(30), every: .milliseconds(100)) { status()?.gatePolicy?.rules.first?.rule == "deny tcp to_guest port 7002" },
                "the reload did not swap the rules: \(String(describing: status()?.gatePolicy))")
        #expect(try Self.reach(network, port: 7002) == .silent, "after the reload 7002 is blocked")
        #expect(try Self.reach(network, port: 7001) == .refused, "and 7001 open again")
        #expect(client.waitForReplies(repliesBefore + 20, timeout: .seconds(60)), "replies stopped after the reload: \(client.errors)")
        #expect(client.reconnects == 0, "the client's connection survives the swap")
        let values = client.values
        #expect(zip(values, values.dropFirst()).allSatisfy { $0 < $1 }, "no reply lost or repeated across the swap")
        #expect(client.errors.isEmpty, "\(client.errors)")
        #expect(((try? String(contentsOfFile: "\(directory.path)/primary.log", encoding: .utf8)) ?? "").contains("gate policy dropped tcp"),
                "dropped frames are logged")
    }
}
