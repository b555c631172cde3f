import Foundation
import Testing
import UnderstudyHarness
import UnderstudyWitness

/// The node's own record of its last term: what it may resume from after a restart.
@Suite struct WitnessTermRecordTests {
    @Test func aStoredTermIsLoadedBackAndReplacedWhole() throws {
        try withTemporaryDirectory("term-record") { directory in
            let record = WitnessTermRecord(directory: "\(directory)/state")
            #expect(try record.load() == nil, "no file: this node never held a term")
            try record.store(WitnessTerm(number: 3, holder: "node-a"))
            #expect(try record.load() == WitnessTerm(number: 3, holder: "node-a"))
            try record.store(WitnessTerm(number: 12, holder: "node-a"))
            #expect(try String(contentsOfFile: record.path, encoding: .utf8) == "12 node-a\n")
            #expect(!FileManager.default.fileExists(atPath: record.path + ".new"), "the temporary file was renamed")
            let attributes = try FileManager.default.attributesOfItem(atPath: record.path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600)
        }
    }

    @Test func anUnreadableRecordIsRefusedNotTakenForNoTerm() throws {
        try withTemporaryDirectory("term-record") { directory in
            let record = WitnessTermRecord(directory: directory)
            try "seven node-a\n".write(toFile: record.path, atomically: false, encoding: .utf8)
            #expect {
                _ = try record.load()
            } throws: { error in
                guard case .record(let what) = error as? WitnessError else { return false }
                return what.contains(record.path) && what.contains(#"holds "seven node-a", not"#)
            }
        }
    }

    @Test func aRecordThatCannotBeWrittenIsAnError() throws {
        try withTemporaryDirectory("term-record") { directory in
            // A file where the record's directory should be.
            FileManager.default.createFile(atPath: "\(directory)/state", contents: Data())
            let record = WitnessTermRecord(directory: "\(directory)/state")
            #expect(throws: WitnessError.self) { try record.store(WitnessTerm(number: 1, holder: "node-a")) }
        }
    }
}
