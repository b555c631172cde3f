@testable import UnderstudyDisk
import UnderstudyProtocol

extension FuzzTarget {
    /// The client's side of the NBD handshake, fed to the server's state machine in the pieces it
    /// asks for, until it starts transmission, closes, or the bytes run out.
    static let nbdHandshake = FuzzTarget(name: "nbd-handshake", run: { bytes in
        var machine = NBDHandshakeStateMachine(export: NBDSamples.export)
        var position = 0
        while machine.bytesWanted > 0, bytes.count - position >= machine.bytesWanted {
            let piece = Array(bytes[position..<(position + machine.bytesWanted)])
            position += piece.count
            switch machine.received(piece) {
            case .receive, .send, .refuse: continue
            case .startTransmission, .close: return
            }
        }
    }, seeds: {
        [NBDSamples.handshake(option: NBDOption.go), NBDSamples.handshake(option: NBDOption.exportName),
         NBDSamples.handshake(option: NBDOption.list) + NBDSamples.option(NBDOption.abort, [])]
    })

    /// Transmission-phase requests: 28-byte headers parsed and checked against a read-write and a
    /// read-only export; the data a write request announces is skipped as the server reads it.
    static let nbdRequests = FuzzTarget(name: "nbd-requests", run: { bytes in
        let readOnly = NBDExport(name: NBDSamples.export.name, size: NBDSamples.export.size, isReadOnly: true)
        var position = 0
        while bytes.count - position >= NBDRequest.headerSize {
            guard let request = try? NBDRequest(header: Array(bytes[position..<(position + NBDRequest.headerSize)])) else { return }
            position += NBDRequest.headerSize
            _ = readOnly.check(request)
            switch NBDSamples.export.check(request) {
            case .execute(.write): position += min(Int(request.length), bytes.count - position)
            case .execute: continue
            case .reject(_, let discard): position += min(discard, bytes.count - position)
            }
        }
    }, seeds: {
        let requests: [(NBDCommand, NBDCommandFlags, UInt64, UInt32)] = [
            (.read, [], 0, 4096), (.write, [.fua], 4096, 16), (.flush, [], 0, 0), (.trim, [], 8192, 4096),
            (.writeZeroes, [.noHole], 0, 65536), (.disconnect, [], 0, 0),
        ]
        return [requests.enumerated().flatMap { handle, request in
            var writer = WireWriter(capacity: NBDRequest.headerSize + 16)
            writer.write(NBDMagic.request)
            writer.write(request.1.rawValue)
            writer.write(request.0.rawValue)
            writer.write(UInt64(handle))
            writer.write(request.2)
            writer.write(request.3)
            if request.0 == .write { writer.write(bytes: [UInt8](repeating: 0x5A, count: Int(request.3))) }
            return writer.bytes
        }]
    })
}
