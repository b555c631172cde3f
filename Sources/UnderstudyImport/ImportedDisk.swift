/// One disk of the imported VM, in guest order (the first boots).
public struct ImportedDisk: Sendable, Equatable, Codable {
    /// The guest's name for it under Understudy, where every disk is virtio-blk: vda, vdb, ...
    public var target: String
    /// What the source called it (libvirt's target dev, OVF's disk id).
    public var sourceName: String
    /// The image: a path (libvirt, a loose OVF) or a member of the OVA archive.
    public var source: String
    /// The image format as the source declares it: raw, qcow2, vmdk, ...
    public var format: String
    /// The guest-visible size when the source declares it (OVF's capacity); otherwise read from the image.
    public var capacity: UInt64?
    /// Filled in by `ImportPlan.resolved`: the raw image the configuration names, and whether
    /// the import has to write it (`qemu-img convert`) or uses the source in place.
    public var output: String?
    public var converted = false
    /// The size of the raw image, which the backup's replica disk must match.
    public var size: UInt64?

    public init(target: String, sourceName: String, source: String, format: String, capacity: UInt64? = nil) {
        self.target = target
        self.sourceName = sourceName
        self.source = source
        self.format = format
        self.capacity = capacity
    }
}
