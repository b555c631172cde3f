/// What the host says about the files an `ImportPlan` names, gathered by `VMImporter` so that
/// `ImportPlan.resolved` can stay pure.
public struct ImportFacts: Sendable, Equatable {
    /// One disk image: whether it is there, what it is, and its guest-visible size.
    public struct Image: Sendable, Equatable {
        public var isBlockDevice: Bool
        /// `qemu-img info`'s virtual size (for a raw file, its length).
        public var virtualSize: UInt64?
        /// A member of an archive (an OVA's): even a raw one must be written out to be a disk.
        public var inArchive: Bool

        public init(isBlockDevice: Bool = false, virtualSize: UInt64?, inArchive: Bool = false) {
            self.isBlockDevice = isBlockDevice
            self.virtualSize = virtualSize
            self.inArchive = inArchive
        }
    }

    /// By the disk's `source`; a source not listed is missing.
    public var images: [String: Image] = [:]
    /// The other paths that exist (variable stores, the OVMF template, kernel, initrd, outputs).
    public var existingPaths: Set<String> = []

    public init(images: [String: Image] = [:], existingPaths: Set<String> = []) {
        self.images = images
        self.existingPaths = existingPaths
    }
}
