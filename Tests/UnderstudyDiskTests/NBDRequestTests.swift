import Testing
@testable import UnderstudyDisk
#if canImport(Glibc)
import Glibc
#endif

@Suite("NBD requests and replies")
struct NBDRequestTests {
    static let size: UInt64 = 1 << 20
    static let writable = NBDExport(name: "disk", size: size, isReadOnly: false)
    static let readOnly = NBDExport(name: "disk", size: size, isReadOnly: true)
    static let maximum = NBDExport.maximumPayload

    @Test func headersParseEveryField() throws {
        let request = NBDRequest(flags: [.fua, .noHole], type: 6, handle: 0x0102_0304_0506_0708, offset: 0x1122_3344_5566_7788, length: 0xA0B0_C0D0)
        let bytes = requestBytes(request)
        #expect(bytes.count == NBDRequest.headerSize)
        #expect(try NBDRequest(header: bytes) == request)
        #expect(try NBDRequest(header: bytes).command == .writeZeroes)
        #expect(try NBDRequest(header: requestBytes(NBDRequest(type: 5, handle: 1, offset: 0, length: 1))).command == nil)
    }

    @Test func wrongMagicIsAProtocolViolation() {
        let bytes = requestBytes(NBDRequest(.read, handle: 1, offset: 0, length: 512), magic: 0x6744_6698)
        #expect(throws: DiskError.protocolViolation("request magic is 0x67446698, expected 0x25609513")) { try NBDRequest(header: bytes) }
    }

    @Test(arguments: [0, 1, 27, 29])
    func truncatedOrLongHeadersAreRefused(count: Int) {
        let bytes = Array((requestBytes(NBDRequest(.read, handle: 1, offset: 0, length: 512)) + [0]).prefix(count))
        #expect(throws: DiskError.protocolViolation("a request header has 28 bytes, got \(count)")) { try NBDRequest(header: bytes) }
    }

    @Test(arguments: [
        // Valid requests.
        ("read", NBDRequest(.read, handle: 1, offset: 0, length: 4096), false, NBDRequestCheck.execute(.read)),
        ("read to the last byte", NBDRequest(.read, handle: 1, offset: size - 1, length: 1), false, .execute(.read)),
        ("read with FUA", NBDRequest(.read, flags: .fua, handle: 1, offset: 0, length: 1), false, .execute(.read)),
        ("read of the maximum", NBDRequest(.read, handle: 1, offset: 0, length: UInt32(size)), false, .execute(.read)),
        ("write", NBDRequest(.write, flags: .fua, handle: 1, offset: 512, length: 512), false, .execute(.write)),
        ("trim", NBDRequest(.trim, handle: 1, offset: 0, length: UInt32(size)), false, .execute(.trim)),
        ("write zeroes without holes", NBDRequest(.writeZeroes, flags: [.noHole, .fua], handle: 1, offset: 0, length: 8), false, .execute(.writeZeroes)),
        ("flush ignores offset and length", NBDRequest(.flush, handle: 1, offset: 7, length: 9), false, .execute(.flush)),
        ("flush on a read-only export", NBDRequest(.flush, handle: 1, offset: 0, length: 0), true, .execute(.flush)),
        ("read on a read-only export", NBDRequest(.read, handle: 1, offset: 0, length: 1), true, .execute(.read)),
        ("disconnect", NBDRequest(.disconnect, handle: 1, offset: 0, length: 0), false, .execute(.disconnect)),
        // Out of range or too long.
        ("read past the end", NBDRequest(.read, handle: 1, offset: size - 1, length: 2), false, .reject(.invalidArgument, discard: 0)),
        ("read starting past the end", NBDRequest(.read, handle: 1, offset: size + 1, length: 1), false, .reject(.invalidArgument, discard: 0)),
        ("read whose end overflows", NBDRequest(.read, handle: 1, offset: .max, length: 2), false, .reject(.invalidArgument, discard: 0)),
        ("read of nothing", NBDRequest(.read, handle: 1, offset: 0, length: 0), false, .reject(.invalidArgument, discard: 0)),
        ("read over the maximum", NBDRequest(.read, handle: 1, offset: 0, length: maximum + 1), false, .reject(.invalidArgument, discard: 0)),
        ("write past the end", NBDRequest(.write, handle: 1, offset: size - 1, length: 2), false, .reject(.noSpace, discard: 2)),
        ("write whose end overflows", NBDRequest(.write, handle: 1, offset: .max, length: 4), false, .reject(.noSpace, discard: 4)),
        ("write over the maximum", NBDRequest(.write, handle: 1, offset: 0, length: maximum + 1), false, .reject(.invalidArgument, discard: Int(maximum) + 1)),
        ("write of nothing", NBDRequest(.write, handle: 1, offset: 0, length: 0), false, .reject(.invalidArgument, discard: 0)),
        ("trim past the end", NBDRequest(.trim, handle: 1, offset: 4096, length: UInt32(size)), false, .reject(.invalidArgument, discard: 0)),
        ("trim of nothing", NBDRequest(.trim, handle: 1, offset: 0, length: 0), false, .reject(.invalidArgument, discard: 0)),
        ("write zeroes past the end", NBDRequest(.writeZeroes, handle: 1, offset: size, length: 1), false, .reject(.noSpace, discard: 0)),
        // Read-only.
        ("write on a read-only export", NBDRequest(.write, handle: 1, offset: 0, length: 512), true, .reject(.notPermitted, discard: 512)),
        ("trim on a read-only export", NBDRequest(.trim, handle: 1, offset: 0, length: 512), true, .reject(.notPermitted, discard: 0)),
        ("write zeroes on a read-only export", NBDRequest(.writeZeroes, handle: 1, offset: 0, length: 512), true, .reject(.notPermitted, discard: 0)),
        // Unknown commands and flags.
        ("CACHE (not advertised)", NBDRequest(type: 5, handle: 1, offset: 0, length: 512), false, .reject(.invalidArgument, discard: 0)),
        ("BLOCK_STATUS (not negotiated)", NBDRequest(type: 7, handle: 1, offset: 0, length: 512), false, .reject(.invalidArgument, discard: 0)),
        ("unknown command", NBDRequest(type: 0x4242, handle: 1, offset: 0, length: 512), false, .reject(.invalidArgument, discard: 0)),
        ("NO_HOLE on a write", NBDRequest(.write, flags: .noHole, handle: 1, offset: 0, length: 8), false, .reject(.invalidArgument, discard: 8)),
        ("DF on a read", NBDRequest(.read, flags: NBDCommandFlags(rawValue: 1 << 2), handle: 1, offset: 0, length: 8), false,
         .reject(.invalidArgument, discard: 0)),
        ("FAST_ZERO (not advertised)", NBDRequest(.writeZeroes, flags: NBDCommandFlags(rawValue: 1 << 4), handle: 1, offset: 0, length: 8), false,
         .reject(.invalidArgument, discard: 0)),
    ])
    func requestsAreCheckedAgainstTheExport(what: String, request: NBDRequest, readOnly: Bool, expected: NBDRequestCheck) {
        #expect((readOnly ? Self.readOnly : Self.writable).check(request) == expected, "\(what)")
    }

    @Test func trimAndWriteZeroesMayExceedThePayloadLimit() {
        let export = NBDExport(name: "disk", size: 1 << 32, isReadOnly: false)
        #expect(export.check(NBDRequest(.trim, handle: 1, offset: 0, length: .max)) == .execute(.trim))
        #expect(export.check(NBDRequest(.writeZeroes, handle: 1, offset: 1, length: .max)) == .execute(.writeZeroes))
    }

    @Test func simpleRepliesCarryMagicErrorAndHandle() {
        #expect(NBDSimpleReply(handle: 0x0102_0304_0506_0708).bytes == [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
        #expect(NBDSimpleReply(error: .noSpace, handle: 9).bytes == [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 28, 0, 0, 0, 0, 0, 0, 0, 9])
    }

    @Test(arguments: [
        (EPERM, NBDError.notPermitted), (EACCES, .notPermitted), (EROFS, .notPermitted), (EINVAL, .invalidArgument),
        (ENOSPC, .noSpace), (EDQUOT, .noSpace), (EFBIG, .noSpace), (EIO, .ioError), (ENOMEM, .ioError), (EBADF, .ioError),
    ])
    func systemErrorsMapToProtocolErrors(code: Int32, expected: NBDError) {
        #expect(NBDError(errno: code) == expected)
        #expect(NBDError(DiskError.io(operation: "write", path: "x", errno: code)) == expected)
    }

    @Test func errorValuesAreTheProtocols() {
        #expect([NBDError.notPermitted, .ioError, .invalidArgument, .noSpace].map(\.rawValue) == [1, 5, 22, 28])
        #expect(NBDError(DiskError.invalidImage(path: "x", reason: "truncated")) == .ioError)
    }

    @Test func qemuArgumentsNameTheSocketExportAndNode() {
        #expect(NBDServer.qemuArguments(socketPath: "/run/understudy/vm1/disk.sock", exportName: "vm1", nodeName: "disk0") == [
            "-blockdev", "driver=nbd,server.type=unix,server.path=/run/understudy/vm1/disk.sock,export=vm1,node-name=disk0",
            "-device", "virtio-blk-pci,drive=disk0",
        ])
        #expect(NBDServer.qemuArguments(socketPath: "/tmp/a,b", exportName: "x,,y", nodeName: "d0")[1]
            == "driver=nbd,server.type=unix,server.path=/tmp/a,,b,export=x,,,,y,node-name=d0")
    }
}
