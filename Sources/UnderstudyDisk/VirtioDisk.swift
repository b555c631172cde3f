/// The guest's disk as QEMU attaches it: a virtio-blk device on a named block node.
///
/// The primary backs the node with the agent's NBD server (`NBDServer.qemuArguments`), a failover
/// drill with a qcow2 overlay over a frozen copy of the replica (`overlayArguments`). The device
/// itself is defined once, here, because device state saved from one QEMU loads only into a QEMU
/// whose devices match.
public enum VirtioDisk {
    /// The block node (and drive) name of the guest's first disk.
    public static let nodeName = nodeName(0)

    /// The block node (and drive) name of the guest's disk number `index` (from 0, in order).
    public static func nodeName(_ index: Int) -> String { "disk\(index)" }

    /// The -device options of a virtio-blk disk on the block node `nodeName`.
    /// - Parameter deviceOptions: more properties of the device (e.g. its virtio transport).
    public static func deviceArguments(nodeName: String, deviceOptions: String = "") -> [String] {
        ["-device", "virtio-blk-pci,drive=\(escaped(nodeName))" + (deviceOptions.isEmpty ? "" : ",\(deviceOptions)")]
    }

    /// A virtio-blk disk on the qcow2 image at `overlay`. Its backing file is the one named in the
    /// image (`qemu-img create -f qcow2 -F raw -b BACKING OVERLAY`): the guest's writes land in the
    /// overlay and never reach the backing file.
    public static func overlayArguments(overlay: String, nodeName: String = nodeName, deviceOptions: String = "") -> [String] {
        overlayBlockdevArguments(overlay: overlay, nodeName: nodeName) + deviceArguments(nodeName: nodeName, deviceOptions: deviceOptions)
    }

    /// The block node of the qcow2 image at `overlay` alone, for a device attached otherwise.
    public static func overlayBlockdevArguments(overlay: String, nodeName: String) -> [String] {
        ["-blockdev", "driver=qcow2,node-name=\(escaped(nodeName)),file.driver=file,file.filename=\(escaped(overlay))"]
    }

    /// `value` with its commas doubled: QEMU's option syntax reads a doubled comma as a literal one.
    static func escaped(_ value: String) -> String { value.split(separator: ",", omittingEmptySubsequences: false).joined(separator: ",,") }
}
