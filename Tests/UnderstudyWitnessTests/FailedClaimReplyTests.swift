import Foundation
import Testing
@testable import UnderstudyWitness

private func object(_ json: String) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
}

/// The failure branch of a claim reads the active key and the term key: what the client makes of it.
@Suite struct FailedClaimReplyTests {
    private let key = "/understudy/vm/term"

    @Test func bothRangesAreRead() throws {
        // The active key is free; the term key holds "2 node-b" ("MiBub2RlLWI=").
        let reply = try object(#"{"responses":[{"response_range":{}},{"response_range":{"kvs":[{"value":"MiBub2RlLWI="}],"count":"1"}}]}"#)
        let read = try EtcdClient.failedClaim(reply, termKey: key)
        #expect(read.active == nil)
        #expect(read.term == WitnessTerm(number: 2, holder: "node-b"))

        // node-a ("bm9kZS1h") holds the key with lease 42; no term was ever written.
        let held = try object(#"{"responses":[{"response_range":{"kvs":[{"value":"bm9kZS1h","lease":"42"}]}},{"response_range":{}}]}"#)
        let heldRead = try EtcdClient.failedClaim(held, termKey: key)
        #expect(heldRead.active?.value == "node-a")
        #expect(heldRead.active?.lease == 42)
        #expect(heldRead.term == nil)
    }

    @Test func aTermKeyThatIsNotATermIsMalformedNotGuessed() throws {
        // "banana" ("YmFuYW5h"): a claim must not treat it as absent, nor as any term.
        let reply = try object(#"{"responses":[{"response_range":{}},{"response_range":{"kvs":[{"value":"YmFuYW5h"}]}}]}"#)
        #expect(throws: WitnessError.malformedReply(#"/understudy/vm/term holds "banana", not "<number> <node>""#)) {
            _ = try EtcdClient.failedClaim(reply, termKey: key)
        }
        let oneRange = try object(#"{"responses":[{"response_range":{}}]}"#)
        #expect(throws: WitnessError.malformedReply("failed transaction without the two ranges of its failure branch")) {
            _ = try EtcdClient.failedClaim(oneRange, termKey: key)
        }
    }
}
