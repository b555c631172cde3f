import Testing

extension Tag {
    /// The suite starts QEMU (most boot the test guest): an end-to-end test of minutes, not a
    /// unit test. `swift test --skip .tags:vm` runs everything else.
    @Tag public static var vm: Self
}
