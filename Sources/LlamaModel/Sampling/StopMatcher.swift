/// Finds stop strings in streamed text. Holds back any tail that could still become a stop
/// string, so that text after a stop is never emitted.
public struct StopMatcher: Sendable {
    public let stops: [String]
    private var pending = ""

    public init(stops: [String]) { self.stops = stops.filter { !$0.isEmpty } }

    /// Feeds new text; returns the text now safe to emit and whether a stop string was hit
    /// (in which case the returned text ends right before it).
    public mutating func feed(_ text: String) -> (emit: String, stopped: Bool) {
        pending += text
        guard !stops.isEmpty else {
            defer { pending = "" }
            return (pending, false)
        }
        var earliest: String.Index? = nil
        for s in stops {
            if let r = pending.firstRange(of: s), earliest.map({ r.lowerBound < $0 }) ?? true {
                earliest = r.lowerBound
            }
        }
        if let cut = earliest {
            let out = String(pending[..<cut])
            pending = ""
            return (out, true)
        }
        // Keep the longest suffix that is a proper prefix of some stop string.
        var keep = 0
        for s in stops {
            var n = min(s.count - 1, pending.count)
            while n > keep {
                if pending.hasSuffix(s.prefix(n)) {
                    keep = n
                    break
                }
                n -= 1
            }
        }
        let split = pending.index(pending.endIndex, offsetBy: -keep)
        let out = String(pending[..<split])
        pending = String(pending[split...])
        return (out, false)
    }

    /// Text still held back at the end of generation.
    public mutating func flush() -> String {
        defer { pending = "" }
        return pending
    }
}
