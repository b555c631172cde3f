import Foundation
import Testing
import UnderstudyAgent
import UnderstudyHarness
import UnderstudySystem
import UnderstudyTestTags

/// A reply waits for the checkpoint after it. With output-triggered epochs that checkpoint comes
/// as soon as the reply is in the gate, not at the end of the interval: a client that asks back
/// to back gets far more than one reply per interval. The interval is a long 1 s here, so that
/// the difference cannot be noise; with output triggering off the same client gets about one
/// reply per interval, which is what makes the first case able to fail.
@Suite("output-triggered epochs", .serialized, .tags(.vm), .skippedInQuickLoop)
struct OutputTriggeredEpochTests {
    @Test(arguments: [true, false])
    func aReplyWaitsForAShortCheckpointNotTheInterval(outputTriggered: Bool) throws {
        let directory = try TemporaryDirectory("triggered")
        defer { directory.remove() }
        let network = try PairNetwork(tapCount: 2)
        defer { network.remove() }
        try preparePairDirectory(directory.path)
        let vm = "ot\(UUID().uuidString.prefix(6).lowercased())"
        let replicaDirectory = "/dev/shm/understudy-triggered-\(vm)"
        defer {
            try? FileManager.default.removeItem(atPath: replicaDirectory)
            for file in (try? FileManager.default.contentsOfDirectory(atPath: "/dev/shm")) ?? [] where file.hasPrefix("understudy-\(vm)-") {
                try? FileManager.default.removeItem(atPath: "/dev/shm/\(file)")
            }
        }
        let configs = try AgentPair.writeConfigs(
            in: directory.path, port: LoopbackPorts.free(), vm: vm, guest: TestGuest.image,
            cmdline: "understudy.run=counter-service \(network.guestCommandLine)", replicaDirectory: replicaDirectory,
            disks: ("\(directory.path)/primary-disk.img", "\(directory.path)/backup-disk.img"), taps: (network.taps[0], network.taps[1]),
            primaryExtra: "output_triggered = \(outputTriggered)\nmin_gap_ms = 2\n")
        let text = try String(contentsOfFile: configs.primary, encoding: .utf8)
        try text.replacingOccurrences(of: "interval_ms = 25", with: "interval_ms = 1000").write(toFile: configs.primary, atomically: true, encoding: .utf8)

        let backup = try AgentPair.start(["backup", "--config", configs.backup], log: "\(directory.path)/backup.log")
        let primary = try AgentPair.start(["primary", "--config", configs.primary], log: "\(directory.path)/primary.log")
        defer { AgentPair.stop([primary, backup], directory: directory.path) }
        let client = CounterClient(network: network)
        client.start()
        defer { client.stop() }
        // Boot and the initial sync first (until then output passes unprotected); then ten round trips are measured.
        #expect(client.waitForReplies(3, timeout: .seconds(120)), "the service never answered: \(client.errors)")
        func status() throws -> PrimaryStatus? {
            let reply = try runCLI(["status", "--config", configs.primary, "--json"])
            return try JSONDecoder().decode(AgentStatus.self, from: Data(reply.stdout.utf8)).primary
        }
        #expect(eventually(within: .seconds(60), every: .milliseconds(100)) { (try? status())??.committedEpoch ?? 0 > 0 },
                "the primary never protected the VM")
        let measuredFrom = client.history.count
        #expect(client.waitForReplies(measuredFrom + 11, timeout: .seconds(60)), "\(client.errors)")
        let replies = client.history.dropFirst(measuredFrom).prefix(11).map(\.at)
        let gaps = zip(replies.dropFirst(), replies).map { ($0 - $1).milliseconds }.sorted()
        let median = gaps[gaps.count / 2]
        let status = try status()
        print("output-triggered \(outputTriggered): round trip p50 \(median) ms over \(gaps.count); checkpoints for output "
              + "\(status?.checkpointsForOutput ?? -1), for the interval \(status?.checkpointsForInterval ?? -1)")
        if outputTriggered {
            #expect(median < 300, "a round trip waited \(median) ms: the reply's checkpoint should not wait for the 1 s interval")
            #expect((status?.checkpointsForOutput ?? 0) >= 10, "status counts the checkpoints output triggered: \(String(describing: status))")
        } else {
            #expect(median > 700, "without output triggering a round trip waits for the 1 s interval; it took \(median) ms")
            #expect(status?.checkpointsForOutput == 0)
        }
    }
}
