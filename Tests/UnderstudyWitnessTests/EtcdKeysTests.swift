import Foundation
import Testing
@testable import UnderstudyWitness

/// The prefix reads of the fleet registry: the range end and the gateway's key-value lists.
@Suite struct EtcdKeysTests {
    @Test func theRangeEndIsThePrefixWithItsLastByteIncremented() {
        #expect(EtcdClient.rangeEnd(ofPrefix: "/understudy/fleet/") == Data("/understudy/fleet0".utf8))
        #expect(EtcdClient.rangeEnd(ofPrefix: "vm-\u{E9}") == Data([0x76, 0x6D, 0x2D, 0xC3, 0xAA]), "the last UTF-8 byte, not the last character")
        #expect(EtcdClient.rangeEnd(ofPrefix: "") == Data([0]), "an empty prefix reads to the end of the key space")
    }

    @Test func keyValuesAreDecodedFromBase64WithTheirLeaseAndRevision() throws {
        func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }
        let reply: [String: Any] = ["kvs": [["key": b64("/a/1"), "value": b64("{}"), "lease": "7587", "mod_revision": "12"], ["key": b64("/a/2"), "value": b64("x")]]]
        #expect(try EtcdClient.keyValues(reply, in: "t") == [EtcdKeyValue(key: "/a/1", value: "{}", lease: 7587, modRevision: 12), EtcdKeyValue(key: "/a/2", value: "x", lease: 0)])
        #expect(try EtcdClient.keyValues([:], in: "t").isEmpty, "etcd leaves kvs out when nothing matched")
        #expect(throws: WitnessError.self) { try EtcdClient.keyValues(["kvs": [["key": "!!", "value": ""]]], in: "t") }
    }
}
