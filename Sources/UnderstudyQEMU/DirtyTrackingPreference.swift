import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Logging
import UnderstudyProtocol

/// Which dirty-tracking method to use.
public enum DirtyTrackingPreference: String, Sendable, CaseIterable {
    /// PAGEMAP_SCAN where the kernel has it, comparison otherwise.
    case auto, pagemap, compare
}
