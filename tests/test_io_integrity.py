"""Integrity of .nir files (issue 13): write stores a SHA-256 of every dataset and of the
structure; read verifies them and names the node and field of a mismatch, including the
corruption HDF5's Fletcher-32 never sees (a chunk index that loses the chunk: the library
returns zeros). Files without checksums read as before and are reported unverified."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
from file_mutations import data_ranges, graph_fields, same
from tiny_graph import tiny_graph

from nirbridge import io
from nirbridge.cli import main
from nirbridge.errors import CorruptFileError
from nirbridge.io import decode
from nirbridge.io.integrity import DIGEST_ATTR, DIGESTS_NAME, ROOT_ATTR


def _wide_graph(n: int = 16) -> nir.NIRGraph:
    rng = np.random.default_rng(3)
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n])),
               "fc": nir.Affine(rng.normal(size=(n, n)), np.zeros(n)),
               "lif": nir.LIF(tau=np.full(n, 2.0), r=np.ones(n), v_leak=np.zeros(n),
                              v_threshold=np.full(n, 0.5), v_reset=np.zeros(n)),
               "output": nir.Output(np.array([n]))},
        edges=[("input", "fc"), ("fc", "lif"), ("lif", "output")],
        metadata={"dt": 1.0, "none": None, "blob": b"\x00\x01", "pair": (1, 2.5),
                  "names": ["a", "b"], "z": 1 + 2j, "deep": {"x": np.float32(3)}},
        type_check=False)


def test_nirbridge_files_are_verified_and_round_trip(tmp_path, capsys):
    path = tmp_path / "w.nir"
    graph = _wide_graph()
    io.write(path, graph)
    result = io.read_file(path)
    assert result.integrity.verified
    assert same(graph_fields(result.graph)["metadata"], graph_fields(graph)["metadata"])
    with h5py.File(path, "r") as f:
        assert ROOT_ATTR in f.attrs and f[DIGESTS_NAME].shape == (24, 32)  # one per dataset
        assert DIGEST_ATTR not in f["node/nodes/fc/weight"].attrs  # format 1's place
    assert main(["inspect", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["integrity"]["verified"] is True
    assert main(["inspect", str(path)]) == 0
    assert "integrity: verified" in capsys.readouterr().out


def test_files_of_other_tools_read_as_before_and_are_unverified(tmp_path, capsys):
    path = tmp_path / "stock.nir"
    nir.write(path, tiny_graph())
    result = io.read_file(path)
    assert not result.integrity.verified
    np.testing.assert_array_equal(result.graph.nodes["fc"].weight,
                                  tiny_graph().nodes["fc"].weight)
    assert main(["inspect", str(path)]) == 0
    assert "integrity: unverified" in capsys.readouterr().out


def _flip_in_data(path, dataset: str) -> None:
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        off = (ds.id.get_offset() if ds.chunks is None
               else ds.id.get_chunk_info(0).byte_offset)
    data = bytearray(path.read_bytes())
    data[off + 3] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_a_small_array_names_the_node_and_field(tmp_path):
    path = tmp_path / "t.nir"
    io.write(path, tiny_graph())  # arrays < 16 values: no Fletcher-32
    _flip_in_data(path, "node/nodes/lif/v_threshold")
    with pytest.raises(CorruptFileError) as err:
        io.read(path)
    assert "node 'lif' field 'v_threshold': checksum mismatch: the file is corrupt" in \
        str(err.value)


def test_a_chunk_index_that_loses_its_chunk_is_caught(tmp_path):
    """HDF5 returns the fill value (zeros) for a chunk its index no longer lists, and
    never checks Fletcher-32: the checksum of the array catches it."""
    path = tmp_path / "w.nir"
    io.write(path, _wide_graph())
    weight = "node/nodes/fc/weight"
    with h5py.File(path, "r") as f:
        index = f[weight].id.get_chunk_info(0).byte_offset  # where the chunk is
    data = bytearray(path.read_bytes())
    trees = [i for i in range(len(data) - 8) if data[i:i + 4] == b"TREE" and data[i + 4] == 1]
    for t in trees:  # every chunk index of the file: no entry
        data[t + 6:t + 8] = b"\0\0"
    path.write_bytes(bytes(data))
    with h5py.File(path, "r") as f:  # what a reader without checksums gets
        assert not f[weight][()].any()
    assert index > 0 and trees
    with pytest.raises(CorruptFileError, match=r"node '\w+' field '\w+': checksum mismatch"):
        io.read(path)


def test_an_edited_value_an_added_node_and_a_lost_root_checksum_are_corrupt(tmp_path):
    path = tmp_path / "t.nir"
    io.write(path, tiny_graph())
    original = path.read_bytes()
    with h5py.File(path, "r+") as f:
        f["node/nodes/fc/bias"][0] = 9.0
    with pytest.raises(CorruptFileError, match="node 'fc' field 'bias': checksum mismatch"):
        io.read(path)
    path.write_bytes(original)
    with h5py.File(path, "r+") as f:
        f["node/nodes"].create_group("ghost")
    with pytest.raises(CorruptFileError, match="graph structure .*checksum mismatch"):
        io.read(path)
    path.write_bytes(original)
    with h5py.File(path, "r+") as f:
        f["node/nodes/lif"].attrs["extra"] = 1  # attributes outside the decoding: ignored
        del f.attrs[ROOT_ATTR]
    with pytest.raises(CorruptFileError, match="root checksum .* is missing"):
        io.read(path)


def test_unseal_makes_a_hand_edited_file_read_unverified(tmp_path):
    path = tmp_path / "t.nir"
    io.write(path, tiny_graph())
    with h5py.File(path, "r+") as f:
        io.unseal(f)
        f["node/nodes/fc/bias"][0] = 9.0
    result = io.read_file(path)
    assert not result.integrity.verified and result.graph.nodes["fc"].bias[0] == 9.0


def test_data_ranges_cover_every_stored_array(tmp_path):
    path = tmp_path / "w.nir"
    io.write(path, _wide_graph())
    ranges = data_ranges(path)
    assert ranges and all(0 < off < path.stat().st_size and n > 0 for off, n in ranges)


def test_files_of_the_first_checksum_format_are_still_verified(tmp_path):
    """tests/data/format1_wide.nir: ``_wide_graph()`` written by nirbridge at commit
    b6204c5, with the digest of each dataset as its own attribute (no table)."""
    source = Path(__file__).parent / "data" / "format1_wide.nir"
    with h5py.File(source, "r") as f:
        assert DIGESTS_NAME not in f and DIGEST_ATTR in f["node/nodes/fc/weight"].attrs
    result = io.read_file(source)
    assert result.integrity.verified
    np.testing.assert_array_equal(result.graph.nodes["fc"].weight,
                                  _wide_graph().nodes["fc"].weight)
    assert same(graph_fields(result.graph)["metadata"], graph_fields(_wide_graph())["metadata"])
    path = tmp_path / "edited.nir"
    path.write_bytes(source.read_bytes())
    with h5py.File(path, "r+") as f:
        f["node/nodes/fc/bias"][0] = 9.0
    with pytest.raises(CorruptFileError, match="node 'fc' field 'bias': checksum mismatch"):
        io.read(path)


def test_a_lost_or_malformed_checksum_table_is_corrupt(tmp_path):
    path = tmp_path / "t.nir"
    io.write(path, tiny_graph())
    original = path.read_bytes()
    with h5py.File(path, "r+") as f:
        del f[DIGESTS_NAME]  # the table gone: its datasets carry no checksum of their own
    with pytest.raises(CorruptFileError, match="checksum is missing"):
        io.read(path)
    path.write_bytes(original)
    with h5py.File(path, "r+") as f:
        table = f[DIGESTS_NAME][()]
        del f[DIGESTS_NAME]
        f[DIGESTS_NAME] = table[:-1]  # one digest short
    with pytest.raises(CorruptFileError, match="graph structure .*checksum mismatch"):
        io.read(path)
    path.write_bytes(original)
    with h5py.File(path, "r+") as f:
        del f.attrs[ROOT_ATTR]
    with pytest.raises(CorruptFileError, match="table .* root checksum .* is missing"):
        io.read(path)


def test_the_writers_seal_equals_a_walk_of_the_written_file(tmp_path):
    """write seals from its record of what it created; a walk of the file (what the reader
    does) gives the same table and root checksum, for every kind of value and a
    subgraph."""
    inner = tiny_graph()
    graph = _wide_graph()
    graph.nodes["sub"] = inner
    graph.edges = [*graph.edges]
    path = tmp_path / "w.nir"
    io.write(path, graph, check=False)
    with h5py.File(path, "r+") as f:
        table, root = f[DIGESTS_NAME][()], f.attrs[ROOT_ATTR]
        assert f["node/nodes/sub/nodes/fc/weight"].shape == (3, 2)
        decode.seal(f)
        np.testing.assert_array_equal(f[DIGESTS_NAME][()], table)
        assert f.attrs[ROOT_ATTR] == root
    assert io.read_file(path).integrity.verified
