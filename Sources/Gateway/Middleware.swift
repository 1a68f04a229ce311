import Foundation
import Hummingbird

extension APIError {
    /// The error as an HTTP response in OpenAI's JSON shape.
    var response: Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body.encoded())))
    }
}

/// Answers every error in OpenAI's shape: ours (`APIError`), Hummingbird's (`HTTPError`: no
/// route, wrong method, body too large) and anything else (500).
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return error.response
        } catch let error as HTTPError {
            switch error.status {
            case .notFound:
                return APIError.notFound("no route \(request.method) \(request.uri.path)").response
            default:
                let message = error.body ?? error.status.reasonPhrase
                let type = error.status.code >= 500 ? "server_error" : "invalid_request_error"
                return APIError(
                    status: error.status, message: message, type: type, code: nil, outcome: "error"
                ).response
            }
        } catch {
            return APIError.internalError("\(error)").response
        }
    }
}

/// `--http-token`: every `/v1` route and `/metrics` need `Authorization: Bearer <token>`;
/// `/health` does not.
struct BearerAuthMiddleware<Context: RequestContext>: RouterMiddleware {
    let token: [UInt8]
    let metrics: GatewayMetrics

    init(token: String, metrics: GatewayMetrics) {
        self.token = Array(token.utf8)
        self.metrics = metrics
    }

    static func protects(_ path: String) -> Bool {
        path == "/v1" || path.hasPrefix("/v1/") || path == "/metrics"
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        guard Self.protects(request.uri.path) else { return try await next(request, context) }
        guard let header = request.headers[.authorization] else {
            metrics.authRejected.increment()
            throw APIError.unauthorized(
                "You didn't provide an API key: send it in an 'Authorization: Bearer <token>' header (the coordinator's --http-token)."
            )
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer",
            Self.constantTimeEqual(Array(parts[1].trimmingCharacters(in: .whitespaces).utf8), token)
        else {
            metrics.authRejected.increment()
            throw APIError.unauthorized("Incorrect API key provided.")
        }
        return try await next(request, context)
    }

    /// Compares without an early exit, so timing does not tell how much of a guess was right.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = a.count == b.count ? 0 : 1
        for i in 0..<max(a.count, b.count) {
            let x = i < a.count ? a[i] : 0
            let y = i < b.count ? b[i] : 0
            diff |= Int(x ^ y)
        }
        return diff == 0
    }
}
