import Foundation

/// One line QEMU sent on its machine protocol, decoded and classified. Kept apart from the socket
/// so that the reading of QEMU's bytes is tested and fuzzed without a QEMU.
struct QMPMessage {
    enum Kind {
        /// An asynchronous event, skipped by the command loop but kept for its timestamp.
        case event(QMPClient.Event)
        /// A command failed: QEMU's description of the error.
        case failure(String)
        /// A command succeeded with this "return" value.
        case reply(Any)
        /// Neither: a reply the client does not understand.
        case unexpected
    }

    let object: [String: Any]
    let kind: Kind

    /// The greeting QEMU sends once, before command mode.
    var isGreeting: Bool { object["QMP"] != nil }

    /// Decodes one line (without its newline); a line that is not a JSON object is an error.
    init<Line: Collection<UInt8>>(line: Line) throws(QEMUError) {
        let data = Data(line)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw .qmp("malformed reply: \(String(decoding: data, as: UTF8.self))")
        }
        self.object = object
        if let event = object["event"] as? String {
            let time = object["timestamp"] as? [String: Any]
            let seconds = (time?["seconds"] as? NSNumber)?.doubleValue ?? 0
            let microseconds = (time?["microseconds"] as? NSNumber)?.doubleValue ?? 0
            kind = .event(QMPClient.Event(name: event, timestamp: seconds + microseconds / 1e6))
        } else if let error = object["error"] as? [String: Any] {
            kind = .failure(error["desc"] as? String ?? "\(error)")
        } else if let value = object["return"] {
            kind = .reply(value)
        } else {
            kind = .unexpected
        }
    }
}
