/// Copying guest pages out of guest memory into staging.
enum GuestPageCopy {
    /// Copies the pages `pages[positions]` (page numbers, sorted) out of guest `memory` into the
    /// page-sized slots `slot(position)` of `staging`. Runs of pages consecutive in guest memory
    /// and in staging are copied with one memcpy each.
    static func copy(_ pages: [UInt64], at positions: Range<Int>, from memory: UnsafeRawBufferPointer,
                     to staging: UnsafeMutableRawPointer, pageSize: Int, slot: (Int) -> Int) {
        guard let source = memory.baseAddress else { return }
        var position = positions.lowerBound
        while position < positions.upperBound {
            var end = position + 1
            while end < positions.upperBound && pages[end] == pages[end - 1] + 1 && slot(end) == slot(end - 1) + 1 { end += 1 }
            let first = Int(pages[position])
            precondition((first + end - position) * pageSize <= memory.count, "page \(pages[end - 1]) lies beyond guest memory")
            (staging + slot(position) * pageSize).copyMemory(from: source + first * pageSize, byteCount: (end - position) * pageSize)
            position = end
        }
    }
}
