import Foundation
import Testing

extension Tag {
    /// The suite starts QEMU (most boot the test guest): an end-to-end test of minutes, not a unit test.
    @Tag public static var vm: Self
}

extension Trait where Self == ConditionTrait {
    /// Skips the suite in the quick loop (`UNDERSTUDY_QUICK=1 swift test`). swift test filters by
    /// name only, so the `vm` tag alone cannot leave these suites out; every `vm` suite carries this too.
    public static var skippedInQuickLoop: Self {
        .disabled(if: ProcessInfo.processInfo.environment["UNDERSTUDY_QUICK"] != nil,
                  "UNDERSTUDY_QUICK is set: the quick loop leaves out the suites that start QEMU")
    }
}
