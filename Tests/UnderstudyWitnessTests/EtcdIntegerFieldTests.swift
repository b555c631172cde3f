import Foundation
import Testing
@testable import UnderstudyWitness

/// etcd's JSON gateway writes int64 and uint64 fields as strings (proto3 JSON); a lenient server
/// may write numbers. Member ids use all 64 bits.
@Suite struct EtcdIntegerFieldTests {
    @Test func readsStringsAndNumbersOfEitherSignedness() throws {
        let object: [String: Any] = ["id": "-7", "member": "18446744073709551615", "ttl": NSNumber(value: 5)]
        #expect(try EtcdClient.integer(object, "id", in: "test") as Int64 == -7)
        #expect(try EtcdClient.integer(object, "member", in: "test") as UInt64 == .max)
        #expect(try EtcdClient.integer(object, "ttl", in: "test") as Int64 == 5)
        #expect(try EtcdClient.integer(object, "absent", in: "test", default: 3) as UInt64 == 3)
    }

    @Test func refusesWhatIsNoIntegerOfTheType() {
        let object: [String: Any] = ["member": "18446744073709551615", "negative": "-1", "text": "ten", "list": [1]]
        #expect(throws: WitnessError.self) { try EtcdClient.integer(object, "member", in: "test") as Int64 }
        #expect(throws: WitnessError.self) { try EtcdClient.integer(object, "negative", in: "test") as UInt64 }
        #expect(throws: WitnessError.self) { try EtcdClient.integer(object, "text", in: "test") as Int64 }
        #expect(throws: WitnessError.self) { try EtcdClient.integer(object, "list", in: "test") as Int64 }
        #expect(throws: WitnessError.self) { try EtcdClient.integer(object, "absent", in: "test") as Int64 }
    }
}
