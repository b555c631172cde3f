@testable import UnderstudyDisk
import UnderstudyProtocol

/// What a client such as QEMU sends an NBD server, for the seeds of the NBD targets.
enum NBDSamples {
    static let export = NBDExport(name: "disk", size: 1 << 20, isReadOnly: false)

    /// Client flags (fixed newstyle, no zeroes), then one option naming the export.
    static func handshake(option: UInt32) -> [UInt8] {
        var flags = WireWriter(capacity: 4)
        flags.write(NBDClientFlags([.fixedNewstyle, .noZeroes]).rawValue)
        var data = WireWriter()
        switch option {
        case NBDOption.go, NBDOption.info:
            data.write(UInt32(export.name.utf8.count))
            data.write(bytes: export.name.utf8)
            data.write(UInt16(1))
            data.write(NBDInfo.blockSize)
        case NBDOption.exportName:
            data.write(bytes: export.name.utf8)
        default:
            break
        }
        return flags.bytes + self.option(option, data.bytes)
    }

    /// One option: magic, option code, data length, data.
    static func option(_ code: UInt32, _ data: [UInt8]) -> [UInt8] {
        var writer = WireWriter(capacity: 16 + data.count)
        writer.write(NBDMagic.option)
        writer.write(code)
        writer.write(UInt32(data.count))
        writer.write(bytes: data)
        return writer.bytes
    }
}
