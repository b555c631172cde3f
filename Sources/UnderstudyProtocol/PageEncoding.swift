/// How one page travels inside a page batch.
public enum PageEncoding: UInt8, Sendable, CaseIterable {
    /// The page is all zeroes; no data follows.
    case zero = 0
    /// The page's bytes as they are (neither LZ4 form was smaller).
    case raw = 1
    /// LZ4 block of the page.
    case lz4 = 2
    /// LZ4 block of (page XOR the copy of that page the receiver already holds).
    case lz4Delta = 3
}
