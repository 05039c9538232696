package dnsforward

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"

	"golang.org/x/net/dns/dnsmessage"
)

// answer returns the reply to the query q that came from addr over
// network ("udp" or "tcp"), or nil when nothing is to be sent back. It
// asks the upstreams in order and passes the first answer on unchanged; a
// truncated UDP answer is passed on as is: the guest retries over TCP,
// which is forwarded over TCP. When none answers the guest gets SERVFAIL.
func (f *Forwarder) answer(network string, addr net.Addr, q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil {
		f.cfg.Logf("dns forwarder: query from %s (%s) dropped: %v", addr, network, err)
		return nil
	}
	if h.Response {
		return nil // not a query: answering it could loop or amplify
	}
	if rcode := refusal(h, q); rcode != dnsmessage.RCodeSuccess {
		return f.build(refused(h, rcode), nil)
	}
	resp, err := f.forward(network, q, h.ID)
	if err == nil {
		return resp
	}
	if f.ctx.Err() != nil {
		return nil // Close ended the exchange
	}
	var question *dnsmessage.Question
	name := ""
	if qq, qerr := p.Question(); qerr == nil {
		question, name = &qq, qq.Name.String()
	}
	f.cfg.Logf("dns forwarder: %s (%s): %v", name, network, err)
	return f.build(servfail(h), question)
}

// refusal applies the checks miekg/dns's server made before forwarding
// (its DefaultMsgAcceptFunc): only a standard query or a NOTIFY with one
// question and hardly any records is forwarded. It returns the rcode to
// refuse with, or RCodeSuccess to go on. q holds at least a header.
func refusal(h dnsmessage.Header, q []byte) dnsmessage.RCode {
	if h.OpCode != 0 && h.OpCode != 4 { // QUERY, NOTIFY
		return dnsmessage.RCodeNotImplemented
	}
	qd, an, ns, ar := count(q, 0), count(q, 1), count(q, 2), count(q, 3)
	if qd != 1 || an > 1 || ns > 1 || ar > 2 {
		return dnsmessage.RCodeFormatError
	}
	return dnsmessage.RCodeSuccess
}

// count is the header's i-th section count (question, answer, authority,
// additional): dnsmessage.Header does not carry them.
func count(msg []byte, i int) uint16 { return binary.BigEndian.Uint16(msg[4+2*i:]) }

// refused is the header of a refusal: the query's, made a response with
// rcode (a FORMERR's opcode becomes QUERY), as miekg/dns's server sent.
func refused(h dnsmessage.Header, rcode dnsmessage.RCode) dnsmessage.Header {
	h.Response, h.Authoritative, h.RCode = true, false, rcode
	if rcode == dnsmessage.RCodeFormatError {
		h.OpCode = 0
	}
	return h
}

// servfail is the header of the SERVFAIL answering a query with header q:
// its ID and opcode, for a standard query its RD and CD bits (what
// miekg/dns's Msg.SetRcode copied; RA stays unset, as there).
func servfail(q dnsmessage.Header) dnsmessage.Header {
	h := dnsmessage.Header{ID: q.ID, Response: true, OpCode: q.OpCode, RCode: dnsmessage.RCodeServerFailure}
	if q.OpCode == 0 {
		h.RecursionDesired, h.CheckingDisabled = q.RecursionDesired, q.CheckingDisabled
	}
	return h
}

// build packs a reply of header h with question q, if any; nil (and a
// logged line) if it cannot.
func (f *Forwarder) build(h dnsmessage.Header, q *dnsmessage.Question) []byte {
	b := dnsmessage.NewBuilder(nil, h)
	var err error
	if q != nil {
		if err = b.StartQuestions(); err == nil {
			err = b.Question(*q)
		}
	}
	msg, ferr := b.Finish()
	if err = errors.Join(err, ferr); err != nil {
		f.cfg.Logf("dns forwarder: reply %d: %v", h.ID, err)
		return nil
	}
	return msg
}

// isAnswer says whether msg answers the query with this ID: a response
// with the same ID.
func isAnswer(msg []byte, id uint16) bool {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	return err == nil && h.Response && h.ID == id
}

// readMsg reads one message framed by its 2-byte length (DNS over TCP).
func readMsg(r io.Reader) ([]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(n[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// writeMsg writes msg framed by its 2-byte length (DNS over TCP), in one
// write.
func writeMsg(w io.Writer, msg []byte) error {
	if len(msg) > 0xffff {
		return fmt.Errorf("message of %d bytes too long for TCP", len(msg))
	}
	buf := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
	_, err := w.Write(append(buf, msg...))
	return err
}
