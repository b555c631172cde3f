import Testing
@testable import UnderstudyQEMU

@Suite struct QMPMessageTests {
    private func message(_ line: String) throws -> QMPMessage { try QMPMessage(line: Array(line.utf8)) }

    @Test func anEventKeepsQEMUsTimestampToTheMicrosecond() throws {
        let stop = try message(#"{"timestamp": {"seconds": 1764979200, "microseconds": 123456}, "event": "STOP"}"#)
        guard case .event(let event) = stop.kind else { Issue.record("not an event: \(stop.kind)"); return }
        #expect(event.name == "STOP")
        #expect(event.timestamp == 1_764_979_200.123456)
        #expect(!stop.isGreeting)
    }

    @Test func aFailureCarriesQEMUsDescriptionAndAReplyItsValue() throws {
        guard case .failure(let description) = try message(#"{"error": {"class": "GenericError", "desc": "no such file"}}"#).kind else {
            Issue.record("not a failure"); return
        }
        #expect(description == "no such file")
        guard case .reply(let value) = try message(#"{"return": {"running": true}}"#).kind else { Issue.record("not a reply"); return }
        #expect((value as? [String: Any])?["running"] as? Bool == true)
    }

    @Test func theGreetingIsRecognisedAndAnythingElseIsUnexpected() throws {
        let greeting = try message(#"{"QMP": {"version": {}, "capabilities": []}}"#)
        #expect(greeting.isGreeting)
        guard case .unexpected = greeting.kind else { Issue.record("the greeting is not a command's reply"); return }
    }

    @Test(arguments: ["", "[1, 2]", "{\"return\": ", "\u{FF}"])
    func aLineThatIsNotAJSONObjectIsAnError(line: String) {
        #expect(throws: QEMUError.self) { try QMPMessage(line: Array(line.utf8)) }
    }
}
