#if canImport(Glibc)
import Glibc
#endif

/// Option codes of the handshake this server acts on; every other one is answered "unsupported".
enum NBDOption {
    static let exportName: UInt32 = 1
    static let abort: UInt32 = 2
    static let list: UInt32 = 3
    static let info: UInt32 = 6
    static let go: UInt32 = 7
}
