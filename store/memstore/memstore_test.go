package memstore_test

import (
	"testing"

	"github.com/idprov/idprov/provision"
	"github.com/idprov/idprov/store/memstore"
	"github.com/idprov/idprov/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) provision.Store { return memstore.New() })
}
