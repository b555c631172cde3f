import Testing
import UnderstudyNetwork

@Suite("ReverseARP (the announcement of a VM that moved)")
struct ReverseARPTests {
    private let mac: [UInt8] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]

    @Test("a broadcast RARP request from the MAC, both hardware addresses the MAC, padded to 60 bytes")
    func announcementLayout() {
        let frame = ReverseARP.announcement(of: mac)
        #expect(frame.count == 60)
        #expect(Array(frame[0..<6]) == [UInt8](repeating: 0xFF, count: 6))
        #expect(Array(frame[6..<12]) == mac, "switches learn the port from the source address")
        #expect(Array(frame[12..<14]) == [0x80, 0x35])
        #expect(Array(frame[14..<22]) == [0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x03])
        #expect(Array(frame[22..<28]) == mac && Array(frame[32..<38]) == mac)
        #expect(frame[28..<32].allSatisfy { $0 == 0 } && frame[38...].allSatisfy { $0 == 0 })
    }

    @Test("MAC addresses parse from their colon form only")
    func macAddresses() {
        #expect(ReverseARP.macAddress("52:54:00:12:34:56") == mac)
        #expect(ReverseARP.macAddress("52:54:00:ab:CD:ef") == [0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF])
        for bad in ["52:54:00:12:34", "52:54:00:12:34:56:78", "52:54:00:12:34:5", "52:54:00:12:34:zz", "52-54-00-12-34-56", ""] {
            #expect(ReverseARP.macAddress(bad) == nil, "\(bad)")
        }
    }
}
