import Testing
import UnderstudyProtocol

@Suite("Leaving out the look before the stop")
struct PreStopLookTests {
    @Test func theFirstCheckpointLooks() {
        #expect(PreStopLook().pendingWithoutLooking(running: .microseconds(100)) == nil, "no rate is known yet")
    }

    @Test func soonAfterASlowCollectionTheEstimateStandsInForTheLook() {
        var look = PreStopLook(window: .milliseconds(4), mostPages: 512)
        look.collected(pages: 150, running: .milliseconds(5))  // 30 k pages a second, a round trip's checkpoint
        #expect(look.pendingWithoutLooking(running: .milliseconds(3)) == 90)
        #expect(look.pendingWithoutLooking(running: .zero) == 0)
    }

    @Test func tooLongSinceTheCollectionLooks() {
        var look = PreStopLook(window: .milliseconds(4), mostPages: 512)
        look.collected(pages: 1, running: .milliseconds(25))
        #expect(look.pendingWithoutLooking(running: .milliseconds(4)) == 1)
        #expect(look.pendingWithoutLooking(running: .microseconds(4001)) == nil,
                "past the window a burst could have written more than a pause should copy")
    }

    @Test func anEstimateOfMoreThanTheMostPagesLooks() {
        var look = PreStopLook(window: .milliseconds(4), mostPages: 512)
        look.collected(pages: 500, running: .milliseconds(2))  // 250 k pages a second
        #expect(look.pendingWithoutLooking(running: .milliseconds(2)) == 500)
        #expect(look.pendingWithoutLooking(running: .microseconds(2100)) == nil, "525 pages estimated")
    }

    @Test func theFastestRecentCollectionCountsUntilItIsForgotten() {
        var look = PreStopLook(window: .milliseconds(4), mostPages: 512, remembered: 3)
        look.collected(pages: 10, running: .milliseconds(10))
        look.collected(pages: 20_000, running: .milliseconds(10))  // a burst: 2 M pages a second
        look.collected(pages: 10, running: .milliseconds(10))
        #expect(look.pendingWithoutLooking(running: .milliseconds(1)) == nil, "the burst is among the last three")
        look.collected(pages: 10, running: .milliseconds(10))
        #expect(look.pendingWithoutLooking(running: .milliseconds(1)) == nil)
        look.collected(pages: 10, running: .milliseconds(10))
        #expect(look.pendingWithoutLooking(running: .milliseconds(1)) == 1, "three slow collections since the burst")
    }

    @Test func aCollectionOfUnknownRunningTimeLooksNextTime() {
        var look = PreStopLook()
        look.collected(pages: 3, running: .zero)
        #expect(look.pendingWithoutLooking(running: .microseconds(10)) == nil)
        look.collected(pages: 3, running: .milliseconds(-1))
        #expect(look.pendingWithoutLooking(running: .microseconds(10)) == nil)
        look.collected(pages: 3, running: nil)
        #expect(look.pendingWithoutLooking(running: .microseconds(10)) == nil)
    }
}
