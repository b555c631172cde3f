/// A set of page indices below a guest's page count: one bit per page, plus the list of the
/// pages inserted, so that emptying it costs the pages it held, not the guest's size.
struct PageSet: Sendable {
    private var bits: [UInt64] = []
    private var inserted: [UInt64] = []

    /// Adds `index` (below `pageCount`); false when it was already there.
    mutating func insert(_ index: UInt64, of pageCount: UInt64) -> Bool {
        if bits.isEmpty { bits = Array(repeating: 0, count: Int((pageCount + 63) / 64)) }
        let word = Int(index / 64)
        let mask: UInt64 = 1 << (index % 64)
        guard bits[word] & mask == 0 else { return false }
        bits[word] |= mask
        inserted.append(index)
        return true
    }

    mutating func removeAll() {
        for index in inserted { bits[Int(index / 64)] = 0 }
        inserted.removeAll(keepingCapacity: true)
    }
}
