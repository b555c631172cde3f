import Foundation
import Testing
@testable import UnderstudyDisk
import UnderstudyHarness
import UnderstudySystem

/// Several disks as one address space: each byte lands in the right image at the right place,
/// whatever boundaries a range crosses, and nothing leaves the space.
@Suite struct DiskSetTests {
    /// Three images of 4, 1 and 8 KiB, filled with their index + 1, opened as one set.
    func makeSet(_ dir: TemporaryDirectory) throws -> DiskSet {
        let sizes = [4096, 1024, 8192]
        for (index, size) in sizes.enumerated() { try makeImage("\(dir.path)/d\(index).img", size: size) { _ in UInt8(index + 1) } }
        return try DiskSet(paths: sizes.indices.map { "\(dir.path)/d\($0).img" }, readOnly: false)
    }

    @Test func rangesAreCutAtTheImagesBoundaries() throws {
        let dir = try TemporaryDirectory("diskset")
        defer { dir.remove() }
        let set = try makeSet(dir)
        #expect(set.bases == [0, 4096, 5120])
        #expect(set.size == 13312)
        #expect(try set.pieces(offset: 4000, length: 2000, operation: "read", beyondEnd: EINVAL) == [
            .init(image: 0, offset: 4000, length: 96, rangeOffset: 0),
            .init(image: 1, offset: 0, length: 1024, rangeOffset: 96),
            .init(image: 2, offset: 0, length: 880, rangeOffset: 1120),
        ])
        #expect(try set.pieces(offset: 5120, length: 8192, operation: "read", beyondEnd: EINVAL) == [.init(image: 2, offset: 0, length: 8192, rangeOffset: 0)])
        #expect(try set.pieces(offset: 13312, length: 0, operation: "read", beyondEnd: EINVAL).isEmpty)
        #expect(throws: DiskError.self) { _ = try set.pieces(offset: 13000, length: 313, operation: "read", beyondEnd: EINVAL) }
        #expect(throws: DiskError.self) { _ = try set.pieces(offset: .max, length: 2, operation: "read", beyondEnd: EINVAL) }
    }

    @Test func readsWritesAndZeroesLandInTheRightImages() throws {
        let dir = try TemporaryDirectory("diskset")
        defer { dir.remove() }
        let set = try makeSet(dir)
        var read = [UInt8](repeating: 0, count: 1200)
        try read.withUnsafeMutableBytes { try set.read(into: $0, at: 4000) }
        #expect(read == [UInt8](repeating: 1, count: 96) + [UInt8](repeating: 2, count: 1024) + [UInt8](repeating: 3, count: 80))

        let bytes = (0..<1100).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try bytes.withUnsafeBytes { try set.write($0, at: 4090) }
        try set.zero(offset: 5118, length: 4, punchHole: true)
        try set.synchronize()
        let images = try (0..<3).map { try contents("\(dir.path)/d\($0).img") }
        #expect(Array(images[0][4090...]) == Array(bytes[0..<6]))
        #expect(Array(images[1][0..<1022]) == Array(bytes[6..<1028]))
        #expect(Array(images[1][1022...]) == [0, 0], "zeroed across the boundary")
        #expect(Array(images[2][0..<2]) == [0, 0])
        #expect(Array(images[2][2..<70]) == Array(bytes[1032..<1100]))
        #expect(images[2][70] == 3, "nothing written past the range")
        #expect(throws: DiskError.self) { try [UInt8](repeating: 9, count: 2).withUnsafeBytes { try set.write($0, at: set.size - 1) } }
        #expect(try contents("\(dir.path)/d2.img").last == 3, "a write past the end changes nothing")
    }

    @Test func dataRangesAreInTheCombinedSpace() throws {
        let dir = try TemporaryDirectory("diskset")
        defer { dir.remove() }
        // Sparse images: only what is written holds data.
        for (index, size) in [1 << 20, 1 << 20].enumerated() {
            let path = "\(dir.path)/s\(index).img"
            FileManager.default.createFile(atPath: path, contents: nil)
            try FileHandle(forWritingTo: URL(fileURLWithPath: path)).truncate(atOffset: UInt64(size))
        }
        let set = try DiskSet(paths: ["\(dir.path)/s0.img", "\(dir.path)/s1.img"], readOnly: false)
        try [UInt8](repeating: 5, count: 4096).withUnsafeBytes { try set.write($0, at: (1 << 20) + 65536) }
        let ranges = set.dataRanges()
        #expect(!ranges.isEmpty)
        #expect(ranges.allSatisfy { $0.lowerBound >= 0 && $0.upperBound <= set.size })
        #expect(ranges.contains { $0.contains((1 << 20) + 65536) }, "the second disk's data is found at its place: \(ranges)")
        #expect(!ranges.contains { $0.contains(65536) } || ranges.count == 1, "the first disk holds no data there (unless the file system cannot tell)")
    }
}
