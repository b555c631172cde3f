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
            let helper = try Self.runHelperUntilItKillsItself(in: dir, afterSealing: target)
            #expect(helper.terminationReason == .uncaughtSignal && helper.terminationStatus == SIGKILL)
            let store = try ReplicaStore(directory: dir.path, identity: identity)
            #expect(store.recovery?.contains("checkpoint \(target)") == true)
            #expect(store.state.committedEpoch == target)
            #expect(store.state.deviceState == Self.deviceState(target))
            try expectMemory(of: store, isEpoch: target, trial: Int(target))
        }
    }

    /// A journal sealed by the previous version (trailer "USJEND03", SHA-256 of the body) is still
    /// recovered; a body that does not match its trailer's checksum, in either version, is not.
    @Test func aJournalSealedWithSHA256IsStillRecoveredAndATornBodyIsNot() throws {
        for (version, torn) in [("USJEND03", false), ("USJEND03", true), ("USJEND04", true)] {
            let dir = try TemporaryDirectory("crash-journal")
            defer { dir.remove() }
            _ = try Self.runHelperUntilItKillsItself(in: dir, afterSealing: 1)
            let path = dir.path + "/journal"
            var journal = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            func field(_ offset: Int) -> Int { journal[offset..<(offset + 8)].reduce(0) { $0 << 8 | Int($1) } }
            let pageSize = Int(identity.pageSize)
            let pagesOffset = (64 + 8 * field(24) + pageSize - 1) / pageSize * pageSize
            let trailer = pagesOffset + field(24) * pageSize + field(32) + field(40)
            #expect(Array(journal[trailer..<(trailer + 8)]) == Array("USJEND04".utf8), "this version writes XXH3 trailers")
            if version == "USJEND03" {
                journal.replaceSubrange(trailer..<(trailer + 8), with: Array(version.utf8))
                journal.replaceSubrange((trailer + 24)..<(trailer + 40), with: EpochDigest.sha256(Array(journal[64..<trailer])))
            }
            if torn { journal[pagesOffset + 5] ^= 0x40 }
            try Data(journal).write(to: URL(fileURLWithPath: path))
            let store = try ReplicaStore(directory: dir.path, identity: identity)
            #expect(store.state.committedEpoch == (torn ? 0 : 1), "\(version), torn: \(torn)")
            #expect((store.recovery != nil) == !torn, "\(version), torn: \(torn)")
        }
    }

    /// The device state of `epoch` as ReplicaCrashHelper sends it (after the first epoch of a run,
    /// as a delta against the one before).
    static func deviceState(_ epoch: UInt64) -> [UInt8] {
        let label = Array("epoch \(epoch)".utf8)
        return label + [UInt8](repeating: UInt8(ascii: "."), count: 2048 - label.count)
    }

    /// Runs ReplicaCrashHelper, which kills itself once checkpoint `epoch` is sealed and not yet applied.
    private static func runHelperUntilItKillsItself(in dir: TemporaryDirectory, afterSealing epoch: UInt64) throws -> Process {
        let helper = Process()
        helper.executableURL = productsDirectory().appendingPathComponent("ReplicaCrashHelper")
        helper.arguments = [dir.path, "\(pagesPerEpoch)", "\(epoch)"]
        helper.standardOutput = FileHandle.nullDevice
        try helper.run()
        helper.waitUntilExit()
        return helper
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
