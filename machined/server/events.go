package server

import (
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/ballast-os/ballast/api/machine"
	"github.com/ballast-os/ballast/machined/events"
)

// Events implements the RPC: the kept events (since, tail), then, when
// following, each new one until the client goes away.
func (s *Server) Events(req *machine.EventsRequest, stream machine.MachineService_EventsServer) error {
	ring := s.node.Events()
	var since time.Time
	if req.GetSince() != nil {
		since = req.GetSince().AsTime()
	}
	tail := int(req.GetTail())
	if !req.GetFollow() {
		for _, ev := range ring.List(since, tail) {
			if err := stream.Send(eventProto(ev)); err != nil {
				return err
			}
		}
		return nil
	}
	for ev := range ring.Follow(stream.Context(), since, tail) {
		if err := stream.Send(eventProto(ev)); err != nil {
			return err
		}
	}
	return nil
}

func eventProto(ev events.Event) *machine.Event {
	return &machine.Event{Id: ev.ID, Time: timestamppb.New(ev.Time), Kind: ev.Kind, Source: ev.Source, Message: ev.Message, Fields: ev.Fields}
}
