// Package lambdahttp serves an http.Handler as an AWS Lambda function behind
// an API Gateway HTTP API (payload format 2.0), so ingest on Lambda runs the
// very handler it runs on EKS and in whp dev: same routes, same validation,
// same problem+json errors.
//
// The conversion is written here rather than taken from
// awslabs/aws-lambda-go-api-proxy: that module's go.mod pulls in a dozen web
// frameworks, and format 2.0 needs forty lines.
package lambdahttp

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
)

// Handler returns the Lambda handler for h.
func Handler(h http.Handler) func(context.Context, events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
	return func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error) {
		req, err := Request(ctx, ev)
		if err != nil {
			// A malformed event is API Gateway's bug, not the producer's;
			// answer 400 rather than failing the invocation (a 502 to them).
			return events.APIGatewayV2HTTPResponse{StatusCode: http.StatusBadRequest, Body: err.Error()}, nil
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return Response(rec.Result().StatusCode, rec.Header(), rec.Body.Bytes()), nil
	}
}

// Request converts a format 2.0 event into the *http.Request it stands for.
func Request(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (*http.Request, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		b, err := base64.StdEncoding.DecodeString(ev.Body)
		if err != nil {
			return nil, fmt.Errorf("event body: %w", err)
		}
		body = b
	}
	path := ev.RawPath
	if path == "" {
		path = ev.RequestContext.HTTP.Path
	}
	url := path
	if ev.RawQueryString != "" {
		url += "?" + ev.RawQueryString
	}
	method := ev.RequestContext.HTTP.Method
	if method == "" {
		return nil, fmt.Errorf("event has no requestContext.http.method")
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("event request: %w", err)
	}
	// Format 2.0 joins repeated headers with commas and lower-cases names;
	// both read the same through http.Header.
	for k, v := range ev.Headers {
		req.Header.Set(k, v)
	}
	if len(ev.Cookies) > 0 {
		req.Header.Set("Cookie", strings.Join(ev.Cookies, "; "))
	}
	req.Host = ev.RequestContext.DomainName
	req.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	req.RequestURI = url
	req.ContentLength = int64(len(body))
	return req, nil
}

// Response converts what the handler wrote into a format 2.0 response. A
// body that is not UTF-8 goes base64-encoded, as the format requires.
func Response(status int, h http.Header, body []byte) events.APIGatewayV2HTTPResponse {
	resp := events.APIGatewayV2HTTPResponse{StatusCode: status, Headers: map[string]string{}}
	for k, v := range h {
		if http.CanonicalHeaderKey(k) == "Set-Cookie" {
			resp.Cookies = append(resp.Cookies, v...)
			continue
		}
		resp.Headers[k] = strings.Join(v, ",")
	}
	if utf8.Valid(body) {
		resp.Body = string(body)
	} else {
		resp.Body = base64.StdEncoding.EncodeToString(body)
		resp.IsBase64Encoded = true
	}
	return resp
}
