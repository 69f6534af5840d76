module github.com/org/rthub/examples

go 1.26.0

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/org/rthub v0.0.0
	go.uber.org/goleak v1.3.0
)

require (
	github.com/coder/websocket v1.8.15 // indirect
	github.com/gobwas/httphead v0.1.0 // indirect
	github.com/gobwas/ws v1.5.0 // indirect
	github.com/klauspost/compress v1.20.4 // indirect
)

replace github.com/org/rthub => ../
