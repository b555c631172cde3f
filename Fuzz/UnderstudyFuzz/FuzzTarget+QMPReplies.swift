@testable import UnderstudyQEMU

extension FuzzTarget {
    /// What QEMU writes on its machine protocol socket: lines, each decoded and classified as the
    /// client does (greeting, event with its timestamp, failure, reply).
    static let qmpReplies = FuzzTarget(name: "qmp-replies", run: { bytes in
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            guard let message = try? QMPMessage(line: line) else { continue }
            _ = message.isGreeting
            if case .event(let event) = message.kind { _ = QMPClient.pause(in: [event, event]) }
        }
    }, seeds: {
        [
            #"{"QMP": {"version": {"qemu": {"micro": 19, "minor": 2, "major": 7}, "package": "Debian 1:7.2+dfsg-7"}, "capabilities": ["oob"]}}"#,
            #"{"return": {}}"#,
            #"{"timestamp": {"seconds": 1764979200, "microseconds": 123456}, "event": "STOP"}"# + "\n"
                + #"{"return": {}}"# + "\n"
                + #"{"timestamp": {"seconds": 1764979200, "microseconds": 125001}, "event": "RESUME"}"#,
            #"{"return": {"status": "running", "singlestep": false, "running": true}}"#,
            #"{"error": {"class": "GenericError", "desc": "Could not open '/dev/shm/x': Permission denied"}}"#,
        ].map { Array($0.utf8) }
    })
}
