package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listener timing. The backoff doubles after each failed connection up to
// listenBackoffMax, and starts over after a connection that stayed up for
// longer than listenBackoffMax.
var (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second

	// listenPingInterval is how long the listener waits for a notification
	// before it pings the server, so that a connection that died without a
	// word (a dropped network path) is noticed within about this time.
	listenPingInterval = 30 * time.Second
)

// Listen receives the notifications that Apply sends, from every replica
// including this one, until ctx ends, and then returns nil. It holds one
// dedicated connection, outside the pool and its MaxConns, and runs in the
// caller's goroutine.
//
// onEvent is called for each notification with the call id, the call's last
// seq after the transaction and the sending replica's Options.ReplicaID. It
// runs on Listen's goroutine and must return quickly: while it runs,
// notifications wait in the server's queue and in the connection's buffer.
//
// onReconnect, when not nil, is called each time LISTEN is established,
// including the first time, before any onEvent of that connection.
// Notifications sent while no connection listened are lost, so the caller
// should catch its subscribers up from the store then.
//
// When the connection fails or drops, Listen logs the error (rate-limited),
// waits with capped exponential backoff and connects again. It returns an
// error only when onEvent is nil.
func (db *DB) Listen(ctx context.Context, onEvent func(callID string, seq int64, origin string), onReconnect func()) error {
	if onEvent == nil {
		return errors.New("listen: onEvent is nil")
	}

	backoff := listenBackoffMin
	for {
		started := time.Now()
		err := db.listenOnce(ctx, onEvent, onReconnect)
		if ctx.Err() != nil {
			return nil
		}

		if time.Since(started) > listenBackoffMax {
			backoff = listenBackoffMin
		}
		db.metrics.listenFailure()
		db.limited.Log(ctx, slog.LevelWarn, "listen_retry", "store listener failed; reconnecting",
			"database", describe(db.connConfig), "err", err, "retry_in", backoff)

		timer := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
		backoff = min(backoff*2, listenBackoffMax)
	}
}

// listenOnce connects, listens and delivers notifications until the
// connection fails or ctx ends, and returns why it stopped.
func (db *DB) listenOnce(ctx context.Context, onEvent func(string, int64, string), onReconnect func()) error {
	connectCtx, cancel := db.withTimeout(ctx)
	defer cancel()
	conn, err := pgx.ConnectConfig(connectCtx, db.connConfig)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()

	if _, err := conn.Exec(connectCtx, "LISTEN "+NotifyChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	db.listenerPID.Store(conn.PgConn().PID())
	db.logger.Debug("store listener connected", "database", describe(db.connConfig), "channel", NotifyChannel)
	if onReconnect != nil {
		onReconnect()
	}

	for {
		waitCtx, cancel := context.WithTimeout(ctx, listenPingInterval)
		n, err := conn.WaitForNotification(waitCtx)
		timedOut := waitCtx.Err() != nil
		cancel()

		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && timedOut && !conn.IsClosed():
			// Quiet for a while: check that the server is still there.
			pingCtx, cancel := db.withTimeout(ctx)
			err = conn.Ping(pingCtx)
			cancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
			continue
		case err != nil:
			return fmt.Errorf("wait for notification: %w", err)
		}

		callID, seq, origin, ok := parsePayload(n.Payload)
		if !ok {
			db.limited.Log(ctx, slog.LevelWarn, "listen_payload", "malformed notification ignored",
				"channel", n.Channel, "payload_bytes", len(n.Payload))
			continue
		}
		onEvent(callID, seq, origin)
	}
}

// parsePayload splits "<call id> <last seq> <origin>" from the right, so
// that a call id may contain spaces; an origin never does.
func parsePayload(payload string) (callID string, seq int64, origin string, ok bool) {
	rest, origin, ok := cutLast(payload, " ")
	if !ok {
		return "", 0, "", false
	}
	callID, number, ok := cutLast(rest, " ")
	if !ok || callID == "" {
		return "", 0, "", false
	}
	seq, err := strconv.ParseInt(number, 10, 64)
	if err != nil || seq < 1 {
		return "", 0, "", false
	}
	return callID, seq, origin, true
}

// cutLast is strings.Cut around the last occurrence of sep.
func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
