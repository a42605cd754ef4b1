"""mmgraph.metrics"""
