import Foundation
import Testing
import UnderstudyHarness
import UnderstudyProtocol
import UnderstudyReplica

/// Kills a process that is applying checkpoints at random moments and checks that the replica
/// always reopens at exactly one whole epoch.
@Suite("ReplicaStore crash safety")
struct ReplicaCrashTests {
    static let pagesPerEpoch = 2048
    let identity = VMIdentity(id: "crash-test", memorySize: 16 << 20)

    @Test func killDuringApplyLeavesExactlyOneEpoch() throws {
        let dir = try TemporaryDirectory("crash")
        defer { dir.remove() }
        var rng = SystemRandomNumberGenerator()
        var recoveredFromJournal = 0
        var lastEpoch: UInt64 = 0
        let trials = 12
        for trial in 0..<trials {
            let helper = Process()
            helper.executableURL = productsDirectory().appendingPathComponent("ReplicaCrashHelper")
            helper.arguments = [dir.path, "\(Self.pagesPerEpoch)"]
            let output = Pipe()
            helper.standardOutput = output
            try helper.run()
            // Wait for the first commit of this run, so each trial makes progress, then kill at random.
            let handle = output.fileHandleForReading
            var seen = Data()
            while !String(decoding: seen, as: UTF8.self).contains("committed") {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                seen.append(chunk)
            }
            Thread.sleep(forTimeInterval: Double.random(in: 0.0...0.15, using: &rng))
            kill(helper.processIdentifier, SIGKILL)
            helper.waitUntilExit()
            #expect(helper.terminationReason == .uncaughtSignal, "trial \(trial): the helper must have been killed, not exited")

            let store = try ReplicaStore(directory: dir.path, identity: identity)
            if store.recovery != nil { recoveredFromJournal += 1 }
            let epoch = store.state.committedEpoch
            #expect(store.state.phase == .committed)
            #expect(epoch >= lastEpoch, "trial \(trial): committed epoch went back from \(lastEpoch) to \(epoch)")
            #expect(store.state.deviceState == Self.deviceState(epoch))
            try expectMemory(of: store, isEpoch: epoch, trial: trial)
            lastEpoch = epoch
        }
        print("replica crash trials: \(trials), recovered from a sealed journal: \(recoveredFromJournal), final epoch \(lastEpoch)")
    }

    @Test func killBetweenSealAndApplyRecoversTheSealedEpoch() throws {
        let dir = try TemporaryDirectory("crash-seal")
        defer { dir.remove() }
        for target in [UInt64(1), 3] {
            let helper = Process()
            helper.executableURL = productsDirectory().appendingPathComponent("ReplicaCrashHelper")
            helper.arguments = [dir.path, "\(Self.pagesPerEpoch)", "\(target)"]
            helper.standardOutput = FileHandle.nullDevice
            try helper.run()
            helper.waitUntilExit()
            #expect(helper.terminationReason == .uncaughtSignal && helper.terminationStatus == SIGKILL)
            let store = try ReplicaStore(directory: dir.path, identity: identity)
            #expect(store.recovery?.contains("checkpoint \(target)") == true)
            #expect(store.state.committedEpoch == target)
            #expect(store.state.deviceState == Self.deviceState(target))
            try expectMemory(of: store, isEpoch: target, trial: Int(target))
        }
    }

    /// The device state of `epoch` as ReplicaCrashHelper sends it (after the first epoch of a run,
    /// as a delta against the one before).
    static func deviceState(_ epoch: UInt64) -> [UInt8] {
        let label = Array("epoch \(epoch)".utf8)
        return label + [UInt8](repeating: UInt8(ascii: "."), count: 2048 - label.count)
    }

    private func expectMemory(of store: ReplicaStore, isEpoch epoch: UInt64, trial: Int) throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: store.memoryPath))
        let pageSize = Int(identity.pageSize)
        data.withUnsafeBytes { memory in
            var mismatches = 0
            for page in 0..<Self.pagesPerEpoch {
                let expected = epoch << 32 | UInt64(page)
                for word in stride(from: 0, to: pageSize, by: 512) where memory.load(fromByteOffset: page * pageSize + word, as: UInt64.self) != expected {
                    mismatches += 1
                }
            }
            #expect(mismatches == 0, "trial \(trial): memory is not exactly epoch \(epoch)")
        }
    }
}
