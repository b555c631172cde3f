#if canImport(Glibc)
import Glibc
#endif

/// Information items in the replies to NBD_OPT_INFO and NBD_OPT_GO.
enum NBDInfo {
    static let export: UInt16 = 0
    static let blockSize: UInt16 = 3
}
