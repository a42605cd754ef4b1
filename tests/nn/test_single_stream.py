import torch
from torch import nn

from mmgraph.nn import ModalityEmbedding, SingleStreamBlock

HIDDEN = 16
SIZES = [(4, 6), (2, 3), (5, 1)]  # (regions, tokens) per graph


def _batch(sizes=SIZES):
    x_region = torch.randn(sum(r for r, _ in sizes), HIDDEN)
    x_token = torch.randn(sum(t for _, t in sizes), HIDDEN)
    batch_region = torch.cat([torch.full((r,), g) for g, (r, _) in enumerate(sizes)])
    batch_token = torch.cat([torch.full((t,), g) for g, (_, t) in enumerate(sizes)])
    return x_region, x_token, batch_region, batch_token


def _reference(block, x_region, x_token):
    """One graph through nn.MultiheadAttention with the block's weights."""
    mha = nn.MultiheadAttention(HIDDEN, block.heads, batch_first=True)
    with torch.no_grad():
        attn = block.attn
        mha.in_proj_weight.copy_(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]))
        mha.out_proj.load_state_dict(attn.out_proj.state_dict())
    x = torch.cat([x_region, x_token])[None]  # [1, R + T, F]
    h = block.norm_attn(x)
    x = x + mha(h, h, h, need_weights=False)[0]
    x = x + block.ffn(block.norm_ffn(x))
    return x[0, : x_region.size(0)], x[0, x_region.size(0) :]


def test_shapes_and_repr():
    block = SingleStreamBlock(HIDDEN, 4)
    assert repr(block) == "SingleStreamBlock(16, heads=4)"
    x_region, x_token, batch_region, batch_token = _batch()
    out_region, out_token = block(x_region, x_token, batch_region, batch_token)
    assert out_region.shape == x_region.shape and out_token.shape == x_token.shape


def test_equals_a_transformer_layer_per_graph():
    block = SingleStreamBlock(HIDDEN, 4, dropout=0.0).eval()
    x_region, x_token, batch_region, batch_token = _batch()
    out_region, out_token = block(x_region, x_token, batch_region, batch_token)
    for g in range(len(SIZES)):
        ref_region, ref_token = _reference(block, x_region[batch_region == g], x_token[batch_token == g])
        torch.testing.assert_close(out_region[batch_region == g], ref_region, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out_token[batch_token == g], ref_token, atol=1e-5, rtol=1e-5)


def test_graph_alone_equals_graph_in_batch_and_graphs_do_not_mix():
    block = SingleStreamBlock(HIDDEN, 2, dropout=0.0).eval()
    x_region, x_token, batch_region, batch_token = _batch()
    out_region, out_token = block(x_region, x_token, batch_region, batch_token)
    zeros_r = torch.zeros(2, dtype=torch.long)
    zeros_t = torch.zeros(3, dtype=torch.long)
    alone_region, alone_token = block(
        x_region[batch_region == 1], x_token[batch_token == 1], zeros_r, zeros_t
    )
    torch.testing.assert_close(out_region[batch_region == 1], alone_region, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_token[batch_token == 1], alone_token, atol=1e-5, rtol=1e-5)


def test_permutation_equivariance():
    block = SingleStreamBlock(HIDDEN, 2, dropout=0.0).eval()
    x_region, x_token, batch_region, batch_token = _batch()
    out_region, out_token = block(x_region, x_token, batch_region, batch_token)
    p_r, p_t = torch.randperm(x_region.size(0)), torch.randperm(x_token.size(0))
    # Unsorted batch vectors are fine: the block sorts internally.
    perm_region, perm_token = block(x_region[p_r], x_token[p_t], batch_region[p_r], batch_token[p_t])
    torch.testing.assert_close(perm_region, out_region[p_r], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(perm_token, out_token[p_t], atol=1e-5, rtol=1e-5)


def test_modality_embedding_and_gradients():
    embed = ModalityEmbedding(HIDDEN)
    assert repr(embed) == "ModalityEmbedding(16)"
    block = SingleStreamBlock(HIDDEN, 4)
    x_region, x_token, batch_region, batch_token = _batch()
    e_region, e_token = embed(x_region, x_token)
    torch.testing.assert_close(e_region - x_region, embed.embedding.weight[0].expand_as(x_region))
    torch.testing.assert_close(e_token - x_token, embed.embedding.weight[1].expand_as(x_token))
    out_region, out_token = block(e_region, e_token, batch_region, batch_token)
    (out_region.pow(2).sum() + out_token.pow(2).sum()).backward()
    for name, param in list(block.named_parameters()) + list(embed.named_parameters()):
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_graph_without_tokens():
    block = SingleStreamBlock(HIDDEN, 2)
    x_region, x_token, batch_region, batch_token = _batch([(3, 0), (2, 2)])
    out_region, out_token = block(x_region, x_token, batch_region, batch_token)
    assert out_region.shape == (5, HIDDEN) and out_token.shape == (2, HIDDEN)
    assert torch.isfinite(out_region).all()


def test_trains_inside_a_plain_module():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = ModalityEmbedding(HIDDEN)
            self.block = SingleStreamBlock(HIDDEN, 4, dropout=0.0)
            self.out = nn.Linear(HIDDEN, 3)

        def forward(self, x_region, x_token, batch_region, batch_token):
            x_region, x_token = self.block(*self.embed(x_region, x_token), batch_region, batch_token)
            return self.out(x_region)

    model = Net()
    data = _batch()
    target = torch.randint(0, 3, (data[0].size(0),))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(*data), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
